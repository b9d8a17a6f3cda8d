//! `coffer keygen/encrypt/decrypt` through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn coffer(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run coffer")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = coffer(&["keygen", "-o", "k.key"], dir.path());
    assert!(o.status.success(), "keygen: {}", stderr(&o));
    dir
}

/// Deterministic, incompressible-looking content (xorshift).
fn write_pattern(path: &Path, len: u64) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).expect("create"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).expect("a"), fs::File::open(b).expect("b"));
    if fa.metadata().expect("m").len() != fb.metadata().expect("m").len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).expect("read a");
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).expect("read b");
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

#[test]
fn keygen_writes_a_private_key_file_and_refuses_to_overwrite() {
    let dir = setup();
    let meta = fs::metadata(dir.path().join("k.key")).expect("key file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = fs::read_to_string(dir.path().join("k.key")).expect("read");
    assert!(text
        .lines()
        .any(|l| l.starts_with("coffer-kek-v1:") && l.len() == 14 + 64));
    let before = text.clone();
    let o = coffer(&["keygen", "-o", "k.key"], dir.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot create key file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("k.key")).expect("read"),
        before
    );
}

#[test]
fn round_trip_of_a_1_gib_file() {
    let dir = setup();
    let d = dir.path();
    write_pattern(&d.join("plain"), 1 << 30);
    let o = coffer(&["encrypt", "-k", "k.key", "plain", "-o", "cipher"], d);
    assert!(o.status.success(), "encrypt: {}", stderr(&o));
    let clen = fs::metadata(d.join("cipher")).expect("cipher").len();
    assert!(
        clen > 1 << 30 && clen < (1 << 30) + (1 << 30) / 1000,
        "ciphertext size {clen}"
    );
    let o = coffer(&["decrypt", "-k", "k.key", "cipher", "-o", "restored"], d);
    assert!(o.status.success(), "decrypt: {}", stderr(&o));
    assert!(
        same_contents(&d.join("plain"), &d.join("restored")),
        "restored file differs"
    );
    // A byte changed in the middle: clear failure, non-zero exit, no output, no temp file.
    fs::remove_file(d.join("restored")).expect("rm");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(d.join("cipher"))
        .expect("open");
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(clen / 2)).expect("seek");
    f.write_all(&[0x55]).expect("tamper");
    drop(f);
    let o = coffer(&["decrypt", "-k", "k.key", "cipher", "-o", "restored"], d);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("decryption failed"), "{}", stderr(&o));
    assert!(!d.join("restored").exists(), "partial plaintext written");
    let leftovers: Vec<_> = fs::read_dir(d)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file left behind");
}

#[test]
fn stdin_stdout_and_context_binding() {
    let dir = setup();
    let d = dir.path();
    let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let run = |args: &[&str], input: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(args)
            .current_dir(d)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("wait");
        writer.join().expect("join").ok();
        out
    };
    let enc = run(
        &["encrypt", "-k", "k.key", "-c", "bucket=b", "-c", "key=k"],
        &plain,
    );
    assert!(enc.status.success(), "{}", stderr(&enc));
    assert!(enc.stdout.starts_with(b"COFFER"));
    let dec = run(
        &["decrypt", "-k", "k.key", "-c", "key=k", "-c", "bucket=b"],
        &enc.stdout,
    );
    assert!(dec.status.success(), "{}", stderr(&dec));
    assert_eq!(dec.stdout, plain);
    let wrong = run(
        &[
            "decrypt",
            "-k",
            "k.key",
            "-c",
            "bucket=b",
            "-c",
            "key=other",
        ],
        &enc.stdout,
    );
    assert!(!wrong.status.success());
    assert!(
        wrong.stdout.is_empty(),
        "plaintext released for a wrong context"
    );
    let bad = run(&["encrypt", "-k", "k.key", "-c", "novalue"], b"x");
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("expected NAME=VALUE"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn wrong_key_and_bad_inputs_fail_clearly() {
    let dir = setup();
    let d = dir.path();
    fs::write(d.join("plain"), b"secret payload").expect("write");
    assert!(coffer(&["encrypt", "-k", "k.key", "plain", "-o", "c"], d)
        .status
        .success());
    assert!(coffer(&["keygen", "-o", "other.key"], d).status.success());
    let o = coffer(&["decrypt", "-k", "other.key", "c", "-o", "out"], d);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("was encrypted with key id"),
        "{}",
        stderr(&o)
    );
    assert!(!d.join("out").exists());
    // Not a Coffer object; truncated object; missing input; a malformed key file.
    let o = coffer(&["decrypt", "-k", "k.key", "plain", "-o", "out"], d);
    assert!(
        !o.status.success() && stderr(&o).contains("decryption failed"),
        "{}",
        stderr(&o)
    );
    let c = fs::read(d.join("c")).expect("read");
    fs::write(d.join("short"), &c[..c.len() - 1]).expect("write");
    let o = coffer(&["decrypt", "-k", "k.key", "short", "-o", "out"], d);
    assert!(
        !o.status.success() && stderr(&o).contains("decryption failed"),
        "{}",
        stderr(&o)
    );
    let o = coffer(&["decrypt", "-k", "k.key", "missing", "-o", "out"], d);
    assert!(
        !o.status.success() && stderr(&o).contains("cannot open missing"),
        "{}",
        stderr(&o)
    );
    fs::write(d.join("bad.key"), "coffer-kek-v1:1234").expect("write");
    let o = coffer(&["encrypt", "-k", "bad.key", "plain", "-o", "x"], d);
    assert!(
        !o.status.success() && stderr(&o).contains("bad.key"),
        "{}",
        stderr(&o)
    );
    assert!(!d.join("out").exists() && !d.join("x").exists());
}
