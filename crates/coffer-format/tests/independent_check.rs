//! Runs the independent Python implementation (spec/testkit/independent_check.py, written
//! from the public C2SP spec and spec/*.md only) over the committed vectors, so
//! `cargo test` fails when the Rust code and an independent reading of the spec disagree.
//! Needs `python3` with the `cryptography` package (.ci/run installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::process::Command;

#[test]
fn independent_python_implementation_agrees_with_the_vectors() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/testkit/independent_check.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 must be installed (see .ci/run)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "independent check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("independent_check:"))
        .expect("summary line");
    assert!(summary.ends_with(" 0 failed"), "{summary}");
    let passed: usize = summary
        .trim_start_matches("independent_check: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(passed >= 50, "too few vectors checked: {summary}");
}
