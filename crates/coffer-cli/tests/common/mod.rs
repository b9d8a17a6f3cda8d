//! The one harness the Rust tests use to run the real `coffer server` binary: start it on a
//! data directory with a free port, wait for `ready`, read its stdout lines (`endpoint: …`,
//! `ca-bundle: …`, the start-up sweep line) and stderr log, stop it with SIGTERM (exit 0, no
//! panic) or kill it on drop. The Python suites have the same in tests/lib/coffer_server.py.
#![allow(dead_code)] // each test binary uses the part it needs

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to print `ready` (a debug build on a loaded 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `coffer server`, killed (SIGKILL) on drop if still running; a test that panics
/// meanwhile prints the server's stdout and stderr.
pub struct ServerProcess {
    child: Option<Child>,
    /// The `endpoint:` line (`https://127.0.0.1:PORT` by default).
    pub endpoint: String,
    /// The `ca-bundle:` line (absent over `--insecure-http`).
    pub ca_bundle: Option<PathBuf>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr_log: PathBuf,
}

impl ServerProcess {
    /// Starts `coffer server --data-dir DATA --listen 127.0.0.1:0` in `cwd` with the root
    /// credentials in its environment (stored on first start) and no other `COFFER_*` or
    /// `AWS_*` variables; stderr goes to `stderr_log`.
    pub fn start(
        data: &Path,
        cwd: &Path,
        stderr_log: &Path,
        root: (&str, &str),
        extra_args: &[&str],
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("COFFER_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .arg("server")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_args)
            .env("COFFER_ROOT_ACCESS_KEY", root.0)
            .env("COFFER_ROOT_SECRET_KEY", root.1)
            .env_remove("MALLOC_ARENA_MAX")
            .env_remove("GLIBC_TUNABLES")
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(stderr_log).expect("stderr log"))
            .spawn()
            .expect("spawn coffer server");

        // Read stdout on a thread for the whole life of the server (so it never blocks on a
        // full pipe), keeping every line.
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let keep = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });

        let deadline = Instant::now() + READY_TIMEOUT;
        let (mut endpoint, mut ca_bundle) = (None, None);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(v) = line.strip_prefix("endpoint: ") {
                        endpoint = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("ca-bundle: ") {
                        ca_bundle = Some(PathBuf::from(v.trim()));
                    } else if line.trim_end() == "ready" {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "coffer server did not print `ready` within {READY_TIMEOUT:?}\n\
                         stdout: {:?}\nstderr:\n{}",
                        lines.lock().unwrap(),
                        fs::read_to_string(stderr_log).unwrap_or_default()
                    );
                }
            }
        }
        Self {
            child: Some(child),
            endpoint: endpoint.expect("no `endpoint:` line before `ready`"),
            ca_bundle,
            lines,
            stderr_log: stderr_log.to_owned(),
        }
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, then the process must exit 0 (graceful shutdown) within 30 s and must not
    /// have panicked.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        // The shell's built-in kill: no procps needed, no unsafe libc call.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", child.id())])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let log = self.stderr();
                assert_eq!(
                    status.code(),
                    Some(0),
                    "SIGTERM must exit 0; stderr:\n{log}"
                );
                assert!(!log.contains("panicked"), "the server panicked:\n{log}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("coffer server did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- coffer server stdout ---\n{}\n--- coffer server stderr ---\n{}",
                    self.lines().join("\n"),
                    self.stderr()
                );
            }
        }
    }
}
