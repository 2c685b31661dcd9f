//! A per-problem curriculum: problems the policy always solves, or never solves, teach
//! nothing under group baselines (every sample gets the same reward), so once a
//! problem's last `window` samples are all passes or all failures it leaves the pool.
//! When too few problems remain, the never-solved ones come back (the policy may have
//! learned enough to solve them since).

use crate::generate::Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Why a problem is out of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Sampled.
    Active,
    /// Its last `window` samples all passed.
    AlwaysSolved,
    /// Its last `window` samples all failed.
    NeverSolved,
}

/// The pool of problems and their recent results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Curriculum {
    /// Samples a problem must have before it can be dropped.
    pub window: usize,
    /// Whether dropping is on at all.
    pub enabled: bool,
    recent: Vec<VecDeque<bool>>,
    status: Vec<Status>,
}

impl Curriculum {
    /// A pool of `n` active problems.
    pub fn new(n: usize, window: usize, enabled: bool) -> Curriculum {
        Curriculum {
            window: window.max(1),
            enabled,
            recent: vec![VecDeque::new(); n],
            status: vec![Status::Active; n],
        }
    }

    /// Records one judged sample of problem `i` (absent rewards are not recorded).
    pub fn record(&mut self, i: usize, passed: bool) {
        let q = &mut self.recent[i];
        q.push_back(passed);
        while q.len() > self.window {
            q.pop_front();
        }
        if self.enabled && q.len() == self.window && self.status[i] == Status::Active {
            if q.iter().all(|&p| p) {
                self.status[i] = Status::AlwaysSolved;
            } else if q.iter().all(|&p| !p) {
                self.status[i] = Status::NeverSolved;
            }
        }
    }

    /// A problem's status.
    pub fn status(&self, i: usize) -> Status {
        self.status[i]
    }

    /// Counts of (active, always solved, never solved).
    pub fn counts(&self) -> (usize, usize, usize) {
        let c = |s| self.status.iter().filter(|&&x| x == s).count();
        (
            c(Status::Active),
            c(Status::AlwaysSolved),
            c(Status::NeverSolved),
        )
    }

    /// Draws `k` distinct active problems. When fewer than `k` are active, never-solved
    /// problems return to the pool first (their history cleared), then always-solved ones.
    pub fn draw(&mut self, k: usize, rng: &mut Rng) -> Vec<usize> {
        for back in [Status::NeverSolved, Status::AlwaysSolved] {
            if self.counts().0 >= k {
                break;
            }
            for i in 0..self.status.len() {
                if self.status[i] == back {
                    self.status[i] = Status::Active;
                    self.recent[i].clear();
                }
            }
        }
        let mut pool: Vec<usize> = (0..self.status.len())
            .filter(|&i| self.status[i] == Status::Active)
            .collect();
        // Partial Fisher-Yates.
        let k = k.min(pool.len());
        for j in 0..k {
            let r = j + (rng.next_u64() % (pool.len() - j) as u64) as usize;
            pool.swap(j, r);
        }
        pool.truncate(k);
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_always_and_never_solved_and_refills() {
        let mut c = Curriculum::new(4, 3, true);
        for _ in 0..3 {
            c.record(0, true);
            c.record(1, false);
        }
        c.record(2, true);
        c.record(2, false);
        c.record(2, true);
        assert_eq!(c.status(0), Status::AlwaysSolved);
        assert_eq!(c.status(1), Status::NeverSolved);
        assert_eq!(c.status(2), Status::Active);
        assert_eq!(c.counts(), (2, 1, 1));
        let mut rng = Rng::new(0);
        let mut d = c.draw(2, &mut rng);
        d.sort();
        assert_eq!(d, vec![2, 3]);
        // Asking for 3 brings the never-solved problem back, not the solved one.
        let mut d = c.draw(3, &mut rng);
        d.sort();
        assert_eq!(d, vec![1, 2, 3]);
        assert_eq!(c.status(0), Status::AlwaysSolved);
        // Disabled: nothing is dropped.
        let mut c = Curriculum::new(1, 2, false);
        c.record(0, true);
        c.record(0, true);
        assert_eq!(c.status(0), Status::Active);
    }
}
