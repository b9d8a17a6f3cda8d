//! `coffer cp/ls/rm/mb/cat` and the coffer-client library against the real `coffer server`
//! (issue 6, "It must show"): round trips with each key-encryption-key provider (a multipart
//! file and a directory tree), the stored object is ciphertext for a plain S3 client and the
//! data directory holds no plaintext (with and without SSE on top), a disabled KMS key fails
//! the download cleanly and leaves no file, library ↔ CLI interoperability, the independent
//! Python implementation decrypting a client-encrypted object, and the error hints.
//!
//! Sizes here are small enough for a debug build (tens of MiB); the 1 GiB round trips run
//! from `tests/client/run.sh` with a release binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;
use common::ServerProcess;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coffer_client::{Endpoint, Kek, KeyFile, Keyring, ServerSide, Transfers};

const ACCESS_KEY: &str = "COFFERCLIENTTEST0001";
const SECRET_KEY: &str = "coffer-client-test-secret-0123456789abcdef";
const MARKER: &[u8] = b"PLAINTEXT-MARKER-coffer-client-e2e";
const MIB: usize = 1 << 20;

/// A `coffer server` on a fresh data directory (the shared harness, `common/mod.rs`).
struct Server {
    _process: ServerProcess,
    endpoint: String,
    ca: PathBuf,
    data: PathBuf,
    _root: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let process = ServerProcess::start(
            &data,
            root.path(),
            &root.path().join("server-stderr.log"),
            (ACCESS_KEY, SECRET_KEY),
            &[],
        );
        Server {
            endpoint: process.endpoint.clone(),
            _process: process,
            ca: data.join("tls/ca.pem"),
            data,
            _root: root,
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.to_owned().into(),
            ca_bundle: Some(self.ca.clone()),
            path_style: true,
        }
    }

    /// Runs `coffer ARGS` as a client of this server (credentials and CA from the
    /// environment, no config file).
    fn coffer(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("COFFER_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_CA_BUNDLE", &self.ca)
            .env("COFFER_CONFIG", "/nonexistent/coffer-config.toml");
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.coffer(args, env);
        assert!(
            out.status.success(),
            "coffer {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn fail(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.coffer(args, env);
        assert!(!out.status.success(), "coffer {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("stack backtrace"), "{err}");
        err
    }

    /// True when any file of the data directory contains `needle`.
    fn data_contains(&self, needle: &[u8]) -> bool {
        let status = Command::new("grep")
            .args(["-r", "-q", "-F", "-a", "--"])
            .arg(std::str::from_utf8(needle).unwrap())
            .arg(&self.data)
            .status()
            .unwrap();
        status.code() == Some(0)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Random bytes with MARKER planted every MiB (and at the start), so a plaintext leak is
/// found by a plain substring search.
fn plaintext(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut v).unwrap();
    let mut at = 0;
    while at + MARKER.len() <= len {
        v[at..at + MARKER.len()].copy_from_slice(MARKER);
        at += MIB;
    }
    v
}

/// A tree with nested directories, an empty file, chunk-boundary sizes and a multipart file.
fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("a/b/c")).unwrap();
    fs::create_dir_all(dir.join("empty-dir-sibling")).unwrap();
    fs::write(dir.join("top.txt"), plaintext(100)).unwrap();
    fs::write(dir.join("a/empty"), b"").unwrap();
    fs::write(dir.join("a/chunk"), plaintext(16384)).unwrap();
    fs::write(dir.join("a/b/chunk-plus-one"), plaintext(16385)).unwrap();
    fs::write(dir.join("a/b/c/multi.bin"), plaintext(11 * MIB + 5)).unwrap();
    fs::write(dir.join("empty-dir-sibling/x"), plaintext(MIB)).unwrap();
}

fn assert_trees_equal(a: &Path, b: &Path) {
    let mut files = Vec::new();
    let mut stack = vec![a.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert_eq!(files.len(), 6);
    for f in files {
        let rel = f.strip_prefix(a).unwrap();
        assert!(
            fs::read(&f).unwrap() == fs::read(b.join(rel)).unwrap(),
            "{} differs",
            rel.display()
        );
    }
}

/// The stored object as a plain S3 client (no Coffer decryption) receives it.
fn raw_get(server: &Server, bucket: &str, key: &str, sse_c: Option<&[u8; 32]>) -> Vec<u8> {
    use base64::Engine as _;
    use md5::Digest as _;
    let s3 = server.endpoint().s3_client().unwrap();
    rt().block_on(async {
        let mut req = s3.get_object().bucket(bucket).key(key);
        if let Some(k) = sse_c {
            let b64 = base64::engine::general_purpose::STANDARD;
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(b64.encode(k))
                .sse_customer_key_md5(b64.encode(md5::Md5::digest(k)));
        }
        let out = req.send().await.unwrap();
        let meta = out.metadata().cloned().unwrap_or_default();
        assert_eq!(
            meta.get("coffer-client-encrypted").map(String::as_str),
            Some("v1"),
            "client-encrypted objects are marked"
        );
        out.body.collect().await.unwrap().into_bytes().to_vec()
    })
}

fn create_kms_key(server: &Server) -> String {
    let kms = server.endpoint().kms_client().unwrap();
    rt().block_on(async {
        let out = kms
            .create_key()
            .description("client e2e")
            .send()
            .await
            .unwrap();
        out.key_metadata().unwrap().key_id().to_owned()
    })
}

#[test]
fn round_trips_with_each_provider_store_only_ciphertext() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_owned();
    server.ok(&["mb", "s3://client-e2e"], &[]);
    let key_id = create_kms_key(&server);
    server.ok(&["keygen", "-o", &w("kek")], &[]);
    let file_kek = format!("file:{}", w("kek"));
    let big = plaintext(23 * MIB + 123);
    fs::write(w("big"), &big).unwrap();
    make_tree(&work.path().join("tree"));
    fs::write(w("sse-c.key"), [7u8; 32]).unwrap();
    let pass = [("COFFER_PASSPHRASE", "correct horse battery staple")];

    for (name, kek) in [
        ("kms", key_id.as_str()),
        ("file", &file_kek),
        ("passphrase", "passphrase"),
    ] {
        // A multipart file (5 MiB parts, 3 in flight) and a directory tree.
        let obj = format!("s3://client-e2e/{name}/big");
        server.ok(
            &[
                "cp",
                "--client-encrypt",
                "--kek",
                kek,
                "--part-size",
                "5",
                "-j",
                "3",
                &w("big"),
                &obj,
            ],
            &pass,
        );
        let back = w(&format!("{name}-big.back"));
        let dl_kek = if name == "kms" { None } else { Some(kek) };
        let mut args = vec!["cp", obj.as_str(), back.as_str()];
        if let Some(k) = dl_kek {
            args.extend(["--kek", k]);
        }
        let said = server.ok(&args, &pass);
        assert!(said.contains("decrypted with"), "{said}");
        assert!(
            fs::read(&back).unwrap() == big,
            "{name}: round trip differs"
        );

        let prefix = format!("s3://client-e2e/{name}/tree");
        server.ok(
            &[
                "cp",
                "-r",
                "--client-encrypt",
                "--kek",
                kek,
                &w("tree"),
                &prefix,
            ],
            &pass,
        );
        let tree_back = w(&format!("{name}-tree"));
        let mut args = vec!["cp", "-r", prefix.as_str(), tree_back.as_str()];
        if let Some(k) = dl_kek {
            args.extend(["--kek", k]);
        }
        server.ok(&args, &pass);
        assert_trees_equal(&work.path().join("tree"), Path::new(&tree_back));

        // A plain S3 client gets ciphertext in Coffer's format.
        let raw = raw_get(&server, "client-e2e", &format!("{name}/big"), None);
        assert!(raw.starts_with(b"COFFER"), "{name}: not Coffer's format");
        assert!(raw.len() > big.len());
        assert!(
            !raw.windows(MARKER.len()).any(|w| w == MARKER),
            "{name}: plaintext in the object"
        );
    }

    // Server-side encryption on top of client-side encryption.
    for (name, extra) in [
        ("sse-kms", vec!["--sse", "aws:kms"]),
        ("sse-s3", vec!["--sse", "AES256"]),
        ("sse-c", vec!["--sse-c-key-file", "SSE-C"]),
    ] {
        let extra: Vec<String> = extra
            .into_iter()
            .map(|a| {
                if a == "SSE-C" {
                    w("sse-c.key")
                } else {
                    a.to_owned()
                }
            })
            .collect();
        let obj = format!("s3://client-e2e/layered/{name}");
        let mut args: Vec<&str> = vec![
            "cp",
            "--client-encrypt",
            "--kek",
            &key_id,
            "--part-size",
            "5",
        ];
        args.extend(extra.iter().map(String::as_str));
        let big_path = w("big");
        args.extend([big_path.as_str(), obj.as_str()]);
        server.ok(&args, &[]);
        let back = w(&format!("{name}.back"));
        let mut args: Vec<&str> = vec!["cp", obj.as_str(), back.as_str()];
        if name == "sse-c" {
            args.extend(extra.iter().map(String::as_str));
        }
        server.ok(&args, &[]);
        assert!(
            fs::read(&back).unwrap() == big,
            "{name}: round trip differs"
        );
        let raw = raw_get(
            &server,
            "client-e2e",
            &format!("layered/{name}"),
            (name == "sse-c").then_some(&[7u8; 32]),
        );
        assert!(raw.starts_with(b"COFFER"));
        assert!(!raw.windows(MARKER.len()).any(|w| w == MARKER));
    }

    // Control: the same file uploaded without client-side encryption is plaintext to S3 …
    server.ok(&["cp", &w("big"), "s3://client-e2e/plain/big"], &[]);
    server.ok(&["cp", "s3://client-e2e/plain/big", &w("plain.back")], &[]);
    assert!(fs::read(w("plain.back")).unwrap() == big);
    // … and the data directory, which encrypts everything at rest, holds no plaintext either
    // (the same search finds the marker in the plaintext file, so it is not vacuous).
    let found = Command::new("grep")
        .args(["-q", "-F", "-a", "--"])
        .arg(std::str::from_utf8(MARKER).unwrap())
        .arg(w("big"))
        .status()
        .unwrap();
    assert_eq!(
        found.code(),
        Some(0),
        "grep cannot find the marker in the plaintext"
    );
    assert!(
        !server.data_contains(MARKER),
        "plaintext found in the data directory"
    );
    // `ls` shows the objects; `rm -r` removes a prefix.
    let out = server.coffer(&["ls", "-r", "s3://client-e2e/kms/"], &[]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("kms/big") && listing.contains("kms/tree/a/b/c/multi.bin"),
        "{listing}"
    );
    let out = server.coffer(&["rm", "-r", "s3://client-e2e/kms/tree/"], &[]);
    assert!(out.status.success());
    let out = server.coffer(&["ls", "-r", "s3://client-e2e/kms/"], &[]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tree/"));
}

#[test]
fn a_disabled_kek_fails_cleanly_and_leaves_no_file() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_owned();
    server.ok(&["mb", "s3://disable-test"], &[]);
    let key_id = create_kms_key(&server);
    let data = plaintext(7 * MIB + 3);
    fs::write(w("f"), &data).unwrap();
    server.ok(
        &[
            "cp",
            "--client-encrypt",
            "--kek",
            &key_id,
            &w("f"),
            "s3://disable-test/f",
        ],
        &[],
    );
    fs::create_dir(w("out")).unwrap();
    let kms = server.endpoint().kms_client().unwrap();
    rt().block_on(kms.disable_key().key_id(&key_id).send())
        .unwrap();

    let err = server.fail(&["cp", "s3://disable-test/f", &w("out/f")], &[]);
    assert!(err.contains("DisabledException"), "{err}");
    assert!(
        err.contains(&format!("enable-key --key-id {key_id}")),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(
        fs::read_dir(w("out")).unwrap().count(),
        0,
        "a partial or temporary file was left"
    );
    // Uploads with the disabled key fail too.
    let err = server.fail(
        &[
            "cp",
            "--client-encrypt",
            "--kek",
            &key_id,
            &w("f"),
            "s3://disable-test/g",
        ],
        &[],
    );
    assert!(err.contains("disabled"), "{err}");

    rt().block_on(kms.enable_key().key_id(&key_id).send())
        .unwrap();
    server.ok(&["cp", "s3://disable-test/f", &w("out/f")], &[]);
    assert!(fs::read(w("out/f")).unwrap() == data);

    // An object altered in the store: the download fails and writes nothing.
    let raw = raw_get(&server, "disable-test", "f", None);
    let mut tampered = raw.clone();
    let at = raw.len() - 5000;
    tampered[at] ^= 0x40;
    let s3 = server.endpoint().s3_client().unwrap();
    rt().block_on(
        s3.put_object()
            .bucket("disable-test")
            .key("f")
            .metadata("coffer-client-encrypted", "v1")
            .body(tampered.into())
            .send(),
    )
    .unwrap();
    let err = server.fail(&["cp", "s3://disable-test/f", &w("out/tampered")], &[]);
    assert!(err.contains("integrity"), "{err}");
    assert!(!Path::new(&w("out/tampered")).exists());
    assert_eq!(
        fs::read_dir(w("out")).unwrap().count(),
        1,
        "only the earlier good download"
    );
}

#[test]
fn library_and_cli_interoperate_and_python_decrypts() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_owned();
    server.ok(&["mb", "s3://interop"], &[]);
    server.ok(&["keygen", "-o", &w("kek")], &[]);
    let key_text = fs::read_to_string(w("kek")).unwrap();
    let file_kek = format!("file:{}", w("kek"));
    let transfers = Transfers::new(server.endpoint().s3_client().unwrap());
    let from_lib = plaintext(6 * MIB + 77);

    // Library → CLI.
    rt().block_on(async {
        let kek = Kek::KeyFile(KeyFile::parse(&key_text).unwrap());
        transfers
            .put_bytes(
                from_lib.clone(),
                "interop",
                "from-lib",
                Some(&kek),
                &ServerSide::Default,
            )
            .await
            .unwrap();
    });
    server.ok(
        &[
            "cp",
            "--kek",
            &file_kek,
            "s3://interop/from-lib",
            &w("from-lib"),
        ],
        &[],
    );
    assert!(fs::read(w("from-lib")).unwrap() == from_lib);
    let out = server.coffer(&["cat", "--kek", &file_kek, "s3://interop/from-lib"], &[]);
    assert!(out.status.success() && out.stdout == from_lib, "coffer cat");

    // CLI → library.
    let from_cli = plaintext(300_000);
    fs::write(w("from-cli"), &from_cli).unwrap();
    server.ok(
        &[
            "cp",
            "--client-encrypt",
            "--kek",
            &file_kek,
            &w("from-cli"),
            "s3://interop/dir/from-cli",
        ],
        &[],
    );
    let back = rt().block_on(async {
        let ring = Keyring::new().with(Kek::KeyFile(KeyFile::parse(&key_text).unwrap()));
        transfers
            .get_bytes("interop", "dir/from-cli", &ring, &ServerSide::Default)
            .await
            .unwrap()
    });
    assert!(back == from_cli);

    // Without the key file, the library names the key it needs.
    let err = rt().block_on(async {
        transfers
            .get_bytes(
                "interop",
                "dir/from-cli",
                &Keyring::new(),
                &ServerSide::Default,
            )
            .await
    });
    let msg = err.err().unwrap().to_string();
    assert!(
        msg.contains("local key file with id") && msg.contains("--kek file:"),
        "{msg}"
    );

    // The independent Python implementation decrypts the stored object with the key file's
    // key and the context {bucket, key}.
    let raw = raw_get(&server, "interop", "dir/from-cli", None);
    fs::write(w("object.bin"), &raw).unwrap();
    let hex_key = key_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("coffer-kek-v1:"))
        .unwrap()
        .to_owned();
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/testkit");
    let script = format!(
        "import sys; sys.path.insert(0, {testkit:?}); import independent_check as ic\n\
         obj = open({obj:?}, 'rb').read()\n\
         plain, meta = ic.decrypt_object(obj, bytes.fromhex({hex_key:?}), {{'bucket': 'interop', 'key': 'dir/from-cli'}})\n\
         sys.stdout.buffer.write(plain)\n\
         try:\n    ic.decrypt_object(obj, bytes.fromhex({hex_key:?}), {{'bucket': 'interop', 'key': 'moved'}})\n    sys.exit(3)\n\
         except ic.Reject:\n    pass\n",
        testkit = testkit.to_str().unwrap(),
        obj = w("object.bin"),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "independent_check.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == from_cli, "Python's plaintext differs");
}

#[test]
fn errors_name_the_cause_with_a_hint() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_owned();
    server.ok(&["mb", "s3://errors-test"], &[]);

    // Untrusted CA.
    let err = server.fail(&["ls"], &[("AWS_CA_BUNDLE", "")]);
    assert!(
        err.contains("hint:") && err.contains("--ca-bundle"),
        "{err}"
    );
    // Wrong credentials.
    let err = server.fail(
        &["ls", "s3://errors-test"],
        &[("AWS_SECRET_ACCESS_KEY", "wrong-secret")],
    );
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("hint: check the credentials"),
        "{err}"
    );
    // SSE-C object read without its key.
    fs::write(w("k"), [9u8; 32]).unwrap();
    fs::write(w("f"), b"secret").unwrap();
    server.ok(
        &[
            "cp",
            "--sse-c-key-file",
            &w("k"),
            &w("f"),
            "s3://errors-test/c",
        ],
        &[],
    );
    let err = server.fail(&["cp", "s3://errors-test/c", &w("c")], &[]);
    assert!(err.contains("--sse-c-key-file"), "{err}");
    assert!(!Path::new(&w("c")).exists());
    server.ok(
        &[
            "cp",
            "--sse-c-key-file",
            &w("k"),
            "s3://errors-test/c",
            &w("c"),
        ],
        &[],
    );
    assert_eq!(fs::read(w("c")).unwrap(), b"secret");
    // A wrong passphrase.
    server.ok(
        &[
            "cp",
            "--client-encrypt",
            "--kek",
            "passphrase",
            &w("f"),
            "s3://errors-test/p",
        ],
        &[("COFFER_PASSPHRASE", "right")],
    );
    let err = server.fail(
        &["cp", "--kek", "passphrase", "s3://errors-test/p", &w("p")],
        &[("COFFER_PASSPHRASE", "wrong")],
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    // A passphrase object without --kek names what it needs.
    let err = server.fail(&["cp", "s3://errors-test/p", &w("p")], &[]);
    assert!(err.contains("--kek passphrase"), "{err}");
    // An unknown KMS key.
    let err = server.fail(
        &[
            "cp",
            "--client-encrypt",
            "--kek",
            "alias/nope",
            &w("f"),
            "s3://errors-test/n",
        ],
        &[],
    );
    assert!(
        err.contains("NotFoundException") && err.contains("hint:"),
        "{err}"
    );
    // A missing bucket.
    let err = server.fail(&["cp", &w("f"), "s3://no-such-bucket/x"], &[]);
    assert!(
        err.contains("NoSuchBucket") && err.contains("coffer mb"),
        "{err}"
    );
}

#[test]
fn profiles_supply_endpoint_credentials_ca_and_default_kek() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_owned();
    server.ok(&["keygen", "-o", &w("kek")], &[]);
    fs::write(
        w("config.toml"),
        format!(
            "[profiles.lab]\nendpoint = {:?}\naccess_key_id = {ACCESS_KEY:?}\nsecret_access_key = {SECRET_KEY:?}\nca_bundle = {:?}\nkek = {:?}\n",
            server.endpoint,
            server.ca.to_str().unwrap(),
            format!("file:{}", w("kek")),
        ),
    )
    .unwrap();
    fs::write(w("f"), plaintext(40_000)).unwrap();
    let env = [
        ("COFFER_CONFIG", w("config.toml")),
        ("AWS_ACCESS_KEY_ID", String::new()),
        ("AWS_SECRET_ACCESS_KEY", String::new()),
        ("AWS_ENDPOINT_URL", String::new()),
        ("AWS_CA_BUNDLE", String::new()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    server.ok(&["mb", "--profile", "lab", "s3://profile-test"], &env);
    server.ok(
        &[
            "cp",
            "--profile",
            "lab",
            "--client-encrypt",
            &w("f"),
            "s3://profile-test/f",
        ],
        &env,
    );
    server.ok(
        &[
            "cp",
            "--profile",
            "lab",
            "s3://profile-test/f",
            &w("f.back"),
        ],
        &env,
    );
    assert_eq!(fs::read(w("f")).unwrap(), fs::read(w("f.back")).unwrap());
    assert!(raw_get(&server, "profile-test", "f", None).starts_with(b"COFFER"));
    // A flag overrides the profile: a wrong endpoint fails.
    let err = server.fail(
        &[
            "ls",
            "--profile",
            "lab",
            "--endpoint",
            "https://127.0.0.1:1",
        ],
        &env,
    );
    assert!(
        err.contains("ConnectionFailed") || err.contains("hint:"),
        "{err}"
    );
    let err = server.fail(&["ls", "--profile", "nope"], &env);
    assert!(err.contains("no profile \"nope\""), "{err}");
}
