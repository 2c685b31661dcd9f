use crate::{Report, Verdict};
use serde::{Deserialize, Serialize};

/// A value for each verdict class, for shaped rewards.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictValues {
    pub accepted: f64,
    pub wrong_answer: f64,
    pub runtime_error: f64,
    pub time_limit_exceeded: f64,
    pub memory_limit_exceeded: f64,
    pub output_limit_exceeded: f64,
    pub compile_error: f64,
}

impl VerdictValues {
    /// CodeRL's shaping: CE -1, RE -0.6, WA/TLE/MLE/OLE -0.3, AC +1.
    pub const CODERL: VerdictValues = VerdictValues {
        accepted: 1.0,
        wrong_answer: -0.3,
        runtime_error: -0.6,
        time_limit_exceeded: -0.3,
        memory_limit_exceeded: -0.3,
        output_limit_exceeded: -0.3,
        compile_error: -1.0,
    };

    /// The value for `v`, or `None` for sandbox_error.
    pub fn get(&self, v: Verdict) -> Option<f64> {
        Some(match v {
            Verdict::Accepted => self.accepted,
            Verdict::WrongAnswer => self.wrong_answer,
            Verdict::RuntimeError => self.runtime_error,
            Verdict::TimeLimitExceeded => self.time_limit_exceeded,
            Verdict::MemoryLimitExceeded => self.memory_limit_exceeded,
            Verdict::OutputLimitExceeded => self.output_limit_exceeded,
            Verdict::CompileError => self.compile_error,
            Verdict::SandboxError => return None,
        })
    }
}

impl Default for VerdictValues {
    fn default() -> Self {
        VerdictValues::CODERL
    }
}

/// How a report becomes a scalar reward.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardSpec {
    /// 1 when every test passes, else 0.
    #[default]
    Binary,
    /// Share of tests passed.
    Fraction,
    /// binary + alpha * fraction (open-r1 uses alpha = 0.1).
    Weighted {
        #[serde(default = "default_alpha")]
        alpha: f64,
    },
    /// A value per verdict class, plus `fraction_weight` times the pass fraction
    /// (CodeRL: the defaults; RLTF: -0.3 base with 1.3 * fraction, i.e. every class at
    /// -0.3 except accepted 1.0 and fraction_weight 1.3 applied to non-accepted reports).
    Shaped {
        #[serde(default)]
        values: VerdictValues,
        #[serde(default)]
        fraction_weight: f64,
    },
}

fn default_alpha() -> f64 {
    0.1
}

impl std::str::FromStr for RewardSpec {
    type Err = serde_json::Error;

    /// Parses a spec's name (`binary`, `fraction`, `weighted`, `shaped`, with default
    /// parameters) or a whole spec as JSON (`{"kind":"weighted","alpha":0.5}`).
    fn from_str(s: &str) -> Result<RewardSpec, serde_json::Error> {
        if s.trim_start().starts_with('{') {
            serde_json::from_str(s)
        } else {
            serde_json::from_value(serde_json::json!({ "kind": s.trim() }))
        }
    }
}

impl RewardSpec {
    /// The reward for `report`. `None` when the verdict is sandbox_error: an
    /// infrastructure failure says nothing about the program, so it must be masked by a
    /// learner, never scored as 0.
    pub fn reward(&self, report: &Report) -> Option<f64> {
        if report.verdict == Verdict::SandboxError {
            return None;
        }
        let fraction = report.pass_fraction();
        let binary = if report.verdict.is_accepted() {
            1.0
        } else {
            0.0
        };
        match *self {
            RewardSpec::Binary => Some(binary),
            RewardSpec::Fraction => Some(fraction),
            RewardSpec::Weighted { alpha } => Some(binary + alpha * fraction),
            RewardSpec::Shaped {
                values,
                fraction_weight,
            } => {
                let base = values.get(report.verdict)?;
                if report.verdict.is_accepted() {
                    Some(base)
                } else {
                    Some(base + fraction_weight * fraction)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdict: Verdict, passed: usize, total: usize) -> Report {
        Report {
            task_id: "t".into(),
            sample: 0,
            language: "python".into(),
            verdict,
            reward: None,
            passed,
            total,
            tests: vec![],
            cpu_ms: 0,
            wall_ms: 0,
            memory_kb: 0,
            message: None,
            fuel_used: None,
            compile: None,
        }
    }

    #[test]
    fn sandbox_error_has_no_reward_under_every_spec() {
        let r = report(Verdict::SandboxError, 3, 4);
        for spec in [
            RewardSpec::Binary,
            RewardSpec::Fraction,
            RewardSpec::Weighted { alpha: 0.1 },
            RewardSpec::Shaped {
                values: VerdictValues::CODERL,
                fraction_weight: 0.0,
            },
        ] {
            assert_eq!(spec.reward(&r), None, "{spec:?}");
        }
    }

    #[test]
    fn values() {
        let wa = report(Verdict::WrongAnswer, 3, 4);
        let ac = report(Verdict::Accepted, 4, 4);
        assert_eq!(RewardSpec::Binary.reward(&wa), Some(0.0));
        assert_eq!(RewardSpec::Binary.reward(&ac), Some(1.0));
        assert_eq!(RewardSpec::Fraction.reward(&wa), Some(0.75));
        assert_eq!(
            RewardSpec::Weighted { alpha: 0.1 }.reward(&ac),
            Some(1.0 + 0.1)
        );
        let coderl = RewardSpec::Shaped {
            values: VerdictValues::CODERL,
            fraction_weight: 0.0,
        };
        assert_eq!(coderl.reward(&wa), Some(-0.3));
        assert_eq!(
            coderl.reward(&report(Verdict::CompileError, 0, 4)),
            Some(-1.0)
        );
        assert_eq!(
            coderl.reward(&report(Verdict::RuntimeError, 0, 4)),
            Some(-0.6)
        );
        let rltf = RewardSpec::Shaped {
            values: VerdictValues {
                accepted: 1.0,
                wrong_answer: -0.3,
                runtime_error: -0.3,
                time_limit_exceeded: -0.3,
                memory_limit_exceeded: -0.3,
                output_limit_exceeded: -0.3,
                compile_error: -0.3,
            },
            fraction_weight: 1.3,
        };
        let got = rltf.reward(&wa).unwrap();
        assert!((got - (-0.3 + 1.3 * 0.75)).abs() < 1e-12);
    }

    #[test]
    fn spec_from_str() {
        assert_eq!("binary".parse::<RewardSpec>().unwrap(), RewardSpec::Binary);
        assert_eq!(
            r#"{"kind":"weighted","alpha":0.5}"#.parse::<RewardSpec>().unwrap(),
            RewardSpec::Weighted { alpha: 0.5 }
        );
        assert!("nonsense".parse::<RewardSpec>().is_err());
        assert!(r#"{"kind":"weighted","alpha":1,"x":1}"#.parse::<RewardSpec>().is_err());
    }

    #[test]
    fn spec_json() {
        let s: RewardSpec = serde_json::from_str(r#"{"kind":"weighted"}"#).unwrap();
        assert_eq!(s, RewardSpec::Weighted { alpha: 0.1 });
        let s: RewardSpec = serde_json::from_str(r#"{"kind":"shaped"}"#).unwrap();
        assert!(matches!(s, RewardSpec::Shaped { .. }));
    }
}
