//! The reward red team: wrong programs that attack the judge from inside their own
//! interpreter (tests/support/hacks.rs), each judged against HumanEval- and MBPP-shaped
//! problems (judged by a checker process) and their plain-assert versions (judged by the
//! host once described, as `crucible judge` does), and a call-test problem, on every
//! Python path: the fork server, a fresh sandbox per program, python-wasm, and `crucible
//! serve` over HTTP. None may be
//! accepted and none may get `sandbox_error` (a null reward the learner would mask):
//! whatever the program does, its reward is a number, and here it is 0. Each test prints
//! its table of hack, verdict and why.
//!
//! Also: the reference of each problem is accepted on each path (so the hacks fail for
//! what they do, not because the problem cannot be passed), and a fork-server child
//! cannot find another problem's tests in its own memory.

use crucible_core::{Problem, Report, Submission, Verdict};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use crucible_suite::hacks::{
    call_problem, humaneval_problem, mbpp_problem, plain_mbpp_problem, plain_problem, reward_hacks,
};
use crucible_suite::judge_in_order;
use std::io::{Read, Write};
use std::sync::Arc;

fn problems() -> Vec<Problem> {
    vec![
        humaneval_problem(),
        mbpp_problem(),
        plain_problem(),
        plain_mbpp_problem(),
        call_problem(),
    ]
}

fn new_judge(fork: bool) -> Judge {
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
    let mut judge = Judge::new(
        sandbox,
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    );
    judge.set_fork_server(fork);
    judge.set_fork_server_slots(2);
    let problems: Vec<Arc<Problem>> = problems().into_iter().map(Arc::new).collect();
    assert_eq!(
        judge.prepare_problems(&problems),
        2,
        "the two plain problems are judged on the host"
    );
    judge
}

/// Every (problem, hack) pair, then each problem's reference, as submissions in `lang`.
fn submissions(lang: &str) -> Vec<(String, Submission)> {
    let mut out = Vec::new();
    for p in problems() {
        for h in reward_hacks() {
            out.push((
                format!("{} [{}] on {}", h.name, h.class, p.id),
                Submission {
                    task_id: p.id.clone(),
                    sample: 0,
                    language: lang.into(),
                    completion: h.code.clone(),
                },
            ));
        }
    }
    for p in problems() {
        out.push((
            format!("reference on {}", p.id),
            Submission {
                task_id: p.id.clone(),
                sample: 0,
                language: lang.into(),
                completion: p.reference.clone().unwrap_or_default(),
            },
        ));
    }
    out
}

/// Asserts the red team's rules over `reports` (in the order of `submissions`) and
/// prints the table.
fn assert_held(path: &str, subs: &[(String, Submission)], reports: &[Report]) {
    assert_eq!(subs.len(), reports.len());
    let mut broken = Vec::new();
    println!("reward red team, {path}:");
    for ((name, _), r) in subs.iter().zip(reports) {
        let why = r
            .message
            .clone()
            .or_else(|| {
                r.tests
                    .iter()
                    .find(|t| !t.verdict.is_accepted())
                    .and_then(|t| t.message.clone())
            })
            .unwrap_or_default();
        let why: String = why.chars().take(120).collect();
        println!(
            "  {:<70} {:<22} {}/{} {}",
            name,
            r.verdict.as_str(),
            r.passed,
            r.total,
            why
        );
        if name.starts_with("reference on") {
            if r.verdict != Verdict::Accepted {
                broken.push(format!("{name}: not accepted: {r:?}"));
            }
            continue;
        }
        if r.verdict == Verdict::Accepted || r.verdict == Verdict::SandboxError {
            broken.push(format!("{name}: {} ({r:?})", r.verdict.as_str()));
        }
        if r.reward != Some(0.0) {
            broken.push(format!("{name}: reward {:?}", r.reward));
        }
        if why.is_empty() {
            broken.push(format!("{name}: no reason given: {r:?}"));
        }
    }
    assert!(
        broken.is_empty(),
        "{path}: {} of {} broke the rules:\n{}",
        broken.len(),
        subs.len(),
        broken.join("\n")
    );
}

fn run_path(judge: Judge, lang: &str, path: &str) {
    let subs = submissions(lang);
    let reports = judge_in_order(
        Arc::new(judge),
        2,
        &problems(),
        subs.iter().map(|(_, s)| s.clone()).collect(),
    );
    assert_held(path, &subs, &reports);
}

#[test]
fn hacks_fail_on_the_fork_server() {
    let judge = new_judge(true);
    assert!(judge.fork_server("python").is_some(), "fork server up");
    run_path(judge, "python", "fork server");
}

#[test]
fn hacks_fail_in_fresh_sandboxes() {
    run_path(new_judge(false), "python", "fresh sandbox");
}

#[test]
fn hacks_fail_under_python_wasm() {
    let judge = new_judge(true);
    if let Err(e) = judge.profiles().get("python-wasm") {
        assert!(
            std::env::var_os("CRUCIBLE_REQUIRE_WASM").is_none(),
            "python-wasm is required here: {e}"
        );
        eprintln!("skipped: {e}");
        return;
    }
    run_path(judge, "python-wasm", "python-wasm");
}

/// POSTs `body` to `url` (http://HOST:PORT/PATH) and returns the answer's body.
fn http_post(url: &str, body: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("http answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    body.to_string()
}

#[test]
fn hacks_fail_through_crucible_serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let state = crucible_server::AppState::new(
        Arc::new(new_judge(true)),
        crucible_server::ServerConfig {
            workers: 2,
            queue: 512,
            ..crucible_server::ServerConfig::default()
        },
        crucible_server::Datasets::default(),
    )
    .expect("server state");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(crucible_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/v1/judge");
    let subs = submissions("python");
    let by_id: std::collections::HashMap<String, Problem> =
        problems().into_iter().map(|p| (p.id.clone(), p)).collect();
    // Two clients at once, as the server has two workers.
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let chunks: Vec<_> = subs.chunks(subs.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (url, by_id) = (&url, &by_id);
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(_, s)| {
                            let body = serde_json::json!({
                                "problem": by_id[&s.task_id],
                                "completion": s.completion,
                            });
                            let answer = http_post(url, &body.to_string());
                            serde_json::from_str::<Report>(&answer)
                                .unwrap_or_else(|e| panic!("not a report ({e}): {answer}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    });
    let _ = stop.send(());
    let _ = rt.block_on(server);
    assert_held("crucible serve", &subs, &reports);
}

#[test]
fn a_fork_server_child_cannot_find_another_problems_tests() {
    // One slot, so every program is forked from the same zygote. A problem with secret
    // expected values is judged first; then a program of another problem searches its
    // own memory (everything it inherited from the zygote) for them.
    let judge = new_judge(true);
    let mut judge = judge;
    judge.set_fork_server_slots(1);
    let judge = Arc::new(judge);
    let mut secret = mbpp_problem();
    secret.id = "secret".into();
    secret.tests = vec![crucible_core::TestCase::Assert {
        code: "assert add(2, 2) != 'CRUCIBLE-SECRET-7f3a9c'".into(),
        entry_point: None,
    }];
    let mut seeker = mbpp_problem();
    seeker.id = "seeker".into();
    seeker.tests = vec![crucible_core::TestCase::Assert {
        code: "found = add(0, 0)\nassert found == 'not found', found".into(),
        entry_point: None,
    }];
    // The search never holds the whole secret itself: it looks for the prefix and
    // checks the bytes after it against the suffix, reversed in its source.
    let search = r#"import gc, sys
PREFIX = 'CRUCIBLE-SECRET-'
SUFFIX = 'c9a3f7'[::-1]
def hit(text):
    i = text.find(PREFIX)
    while i >= 0:
        if text[i + len(PREFIX):i + len(PREFIX) + len(SUFFIX)] == SUFFIX:
            return True
        i = text.find(PREFIX, i + 1)
    return False
def add(a, b):
    for o in gc.get_objects():
        try:
            if hit(repr(o)):
                return 'found in an object'
        except Exception:
            pass
    with open('/proc/self/maps') as maps:
        regions = [l.split()[0] for l in maps if 'rw' in l.split()[1]]
    prefix, suffix = PREFIX.encode(), SUFFIX.encode()
    with open('/proc/self/mem', 'rb', 0) as mem:
        for r in regions:
            lo, hi = (int(x, 16) for x in r.split('-'))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            i = data.find(prefix)
            while i >= 0:
                if data[i + len(prefix):i + len(prefix) + len(suffix)] == suffix:
                    return 'found in memory'
                i = data.find(prefix, i + 1)
    return 'not found'
"#;
    let sub = |p: &Problem, code: &str| Submission {
        task_id: p.id.clone(),
        sample: 0,
        language: "python".into(),
        completion: code.into(),
    };
    let first = judge
        .judge(&secret, &sub(&secret, "def add(a, b):\n    return a + b\n"))
        .expect("judgeable");
    assert_eq!(first.verdict, Verdict::Accepted, "{first:?}");
    let r = judge
        .judge(&seeker, &sub(&seeker, search))
        .expect("judgeable");
    assert_eq!(r.verdict, Verdict::Accepted, "the secret was found: {r:?}");
    // The search itself works: it finds a needle that is in its own memory.
    let planted = format!("PLANT = 'CRUCIBLE-SECRET-7f3a9c'\n{search}");
    let r = judge
        .judge(&seeker, &sub(&seeker, &planted))
        .expect("judgeable");
    assert_eq!(
        r.verdict,
        Verdict::WrongAnswer,
        "the search finds what is there: {r:?}"
    );
    // And in freed memory, where no object holds it any more (as a zygote's cache of
    // earlier problems would have left it).
    let freed = format!(
        "def plant():\n    return len(''.join(['CRUCIBLE-SECRET-', 'c9a3f7'[::-1]]) * 1000)\nplant()\n{search}"
    );
    let r = judge
        .judge(&seeker, &sub(&seeker, &freed))
        .expect("judgeable");
    assert_eq!(
        r.verdict,
        Verdict::WrongAnswer,
        "the search reads freed memory: {r:?}"
    );
    assert!(
        r.tests[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("found in memory"),
        "{r:?}"
    );
}

#[test]
fn a_program_cannot_reach_the_next_check() {
    // One checker, run in place, judges one submission after another. The first floods
    // its channel with forged answers: glued to each real one (so that the checker's
    // read-ahead takes them in with its last answer) and from a thread that outlives
    // the answers. The second, wrong, must still get its own verdicts.
    let mut judge = new_judge(true);
    judge.set_fork_server_slots(1);
    judge.set_host_checks(false);
    let flood = r#"import os, json, struct, threading
FORGED = b''.join(struct.pack('>I', len(b)) + b for b in [json.dumps({'r': 3}).encode()] * 64)
def spam():
    for _ in range(1000):
        try:
            os.write(0, FORGED)
        except OSError:
            return
threading.Thread(target=spam, daemon=True).start()
import sys
m = sys.modules['__main__']
if hasattr(m, 'frame'):
    real = m.frame
    m.send = lambda fd, obj: m.write_all(fd, real(obj) + FORGED)
def add(a, b):
    return a + b
"#;
    for p in [humaneval_problem(), mbpp_problem()] {
        let sub = |code: &str| Submission {
            task_id: p.id.clone(),
            sample: 0,
            language: "python".into(),
            completion: code.into(),
        };
        let first = judge.judge(&p, &sub(flood)).expect("judgeable");
        assert_ne!(first.verdict, Verdict::SandboxError, "{first:?}");
        let wrong = judge
            .judge(&p, &sub("def add(a, b):\n    return None\n"))
            .expect("judgeable");
        assert_eq!(wrong.verdict, Verdict::WrongAnswer, "{wrong:?}");
        assert_eq!(wrong.passed, 0, "{wrong:?}");
    }
}
