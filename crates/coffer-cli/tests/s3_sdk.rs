//! `coffer server` through the AWS Rust SDK (aws-sdk-s3), against the real binary over HTTPS
//! with the CA the server generates on first start (issue 4, "It must show").
//!
//! Every test starts its own server on a fresh data directory with `--listen 127.0.0.1:0`.
//!
//! Where the expected AWS behaviour comes from:
//!
//! - AWS documentation (primary): GetObject/HeadObject API reference ("Encryption request
//!   headers, like x-amz-server-side-encryption, should not be sent for the GetObject
//!   requests … you'll get an HTTP 400 Bad Request error"); PutObject/CopyObject/UploadPart/
//!   CompleteMultipartUpload response syntax (SSE-KMS responses carry the key id, which S3
//!   reports as the key ARN; SSE-C responses carry the customer algorithm and key MD5 and no
//!   `x-amz-server-side-encryption`; CompleteMultipartUpload has no SSE-C echo); PutObject
//!   ("if you … do not provide x-amz-server-side-encryption-aws-kms-key-id, Amazon S3 uses the
//!   AWS managed key (aws/s3)"); GetBucketEncryption ("By default, all buckets have a default
//!   encryption configuration that uses … SSE-S3") and DeleteBucketEncryption ("resets the
//!   default encryption for the bucket as … SSE-S3"); CopyObject (without encryption headers
//!   the target gets the destination bucket's default); the S3 error code list
//!   (`KMS.NotFoundException`, 400); "Checking object integrity" (single-part SSE-S3 ETag = MD5
//!   of the data, multipart ETag ends in `-N`).
//! - S3's recorded answers (LocalStack's SSE snapshot tests, re-recorded against AWS, e.g.
//!   `test_s3_sse_validate_kms_key`; adobe/S3Mock `shouldNotUploadWithWrongEncryptionKey`,
//!   `@S3VerifiedSuccess(year = 2022)`; client issues quoting S3's XML: boto3#982 and
//!   aws-sdk-go#2724 for "not applicable", aws-sdk-ruby#1084 for UploadPart, aws-sdk-go#1726
//!   and aws-cli#6906 for the MD5 mismatch, boto3#1482 for the missing key):
//!   - SSE-C object read (GET/HEAD/copy source) without the key → 400 InvalidRequest "The
//!     object was stored using a form of Server Side Encryption…" (HEAD: 400, no body);
//!   - wrong SSE-C key → 403 AccessDenied (HEAD: 403, no body);
//!   - key MD5 mismatch → 400 InvalidArgument "The calculated MD5 hash of the key did not
//!     match the hash that was provided.";
//!   - key not 256 bits (MD5 matching) → 400 InvalidArgument "The secret key was invalid for
//!     the specified algorithm.";
//!   - SSE-C with `x-amz-server-side-encryption` → 400 InvalidArgument "Server Side Encryption
//!     with Customer provided key is incompatible with the encryption method specified";
//!   - SSE-C headers on an object that is not SSE-C → 400 InvalidRequest "The encryption
//!     parameters are not applicable to this object.";
//!   - UploadPart without the upload's SSE-C headers → 400 InvalidRequest "The multipart
//!     upload initiate requested encryption…"; with a different key → 400 InvalidRequest "The
//!     provided encryption parameters did not match the ones used originally.";
//!   - unknown KMS key (PutObject, CreateMultipartUpload, CopyObject) → 400
//!     KMS.NotFoundException;
//!   - a KMS key id without `aws:kms` → 400 InvalidArgument;
//!   - `x-amz-server-side-encryption` on GET → 400 InvalidArgument ("… header is not supported
//!     for this operation", s3cmd#276).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;
use common::ServerProcess;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use md5::{Digest as _, Md5};

const ACCESS_KEY: &str = "COFFERTESTROOTKEY001";
const SECRET_KEY: &str = "coffer-test-root-secret-0123456789abcdefXYZ";
const MIB: usize = 1 << 20;
const PART: usize = 5 * MIB;
const MULTIPART_LEN: usize = 30 * MIB;
/// A body that spans several 16 KiB format chunks and ends mid-chunk.
const SMALL_LEN: usize = 100 * 1024 + 7;

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// A running `coffer server` on a data directory (the shared harness, `common/mod.rs`), with
/// this suite's checks of its start-up lines and an AWS SDK client for it.
struct Server {
    process: ServerProcess,
    endpoint: String,
    ca_pem: Vec<u8>,
}

/// The directories of one test: `root/data` is the data directory, `root/cwd` the server's
/// working directory (must stay empty), `logs` holds the server's stderr (outside `root`).
struct Dirs {
    root: tempfile::TempDir,
    logs: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("cwd")).expect("cwd");
        Self {
            root,
            logs: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    /// Nothing but the data directory and the (empty) working directory under the root.
    fn assert_nothing_written_outside_data(&self) {
        let mut names: Vec<String> = fs::read_dir(self.root.path())
            .expect("read root")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["cwd", "data"],
            "files appeared next to the data dir"
        );
        let cwd: Vec<_> = fs::read_dir(self.root.path().join("cwd"))
            .expect("read cwd")
            .collect();
        assert!(
            cwd.is_empty(),
            "the server wrote into its working directory: {cwd:?}"
        );
    }
}

impl Server {
    fn start(dirs: &Dirs) -> Self {
        let data = dirs.data();
        let log_name = format!(
            "stderr-{}.log",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let process = ServerProcess::start(
            &data,
            &dirs.root.path().join("cwd"),
            &dirs.logs.path().join(log_name),
            (ACCESS_KEY, SECRET_KEY),
            &[],
        );
        let endpoint = process.endpoint.clone();
        assert!(
            endpoint.starts_with("https://127.0.0.1:"),
            "HTTPS by default: {endpoint}"
        );
        let ca_bundle = process
            .ca_bundle
            .clone()
            .expect("no `ca-bundle:` line before `ready`");
        assert!(
            ca_bundle.is_absolute(),
            "ca-bundle path is absolute: {ca_bundle:?}"
        );
        assert_eq!(
            ca_bundle.canonicalize().expect("ca-bundle exists"),
            data.join("tls/ca.pem")
                .canonicalize()
                .expect("DIR/tls/ca.pem"),
            "the CA lives at DIR/tls/ca.pem"
        );
        let lines = process.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("try: aws s3 ls --endpoint-url")
                    && l.contains(&endpoint)
                    && l.contains("--ca-bundle")),
            "a paste-ready `try: aws s3 ls …` line: {lines:?}"
        );
        // The server re-executed itself (same process) with one malloc arena (server.rs,
        // limit_malloc_arenas): its environment now says so.
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let environ = fs::read(format!("/proc/{}/environ", process.pid())).expect("environ");
            assert!(
                environ
                    .split(|&b| b == 0)
                    .any(|v| v == b"MALLOC_ARENA_MAX=1"),
                "the server runs with MALLOC_ARENA_MAX=1"
            );
        }
        let ca_pem = fs::read(&ca_bundle).expect("read CA");
        Self {
            process,
            endpoint,
            ca_pem,
        }
    }

    fn client(&self) -> Client {
        let trust = TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(self.ca_pem.clone());
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .expect("TLS context"),
            )
            .build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                ACCESS_KEY,
                SECRET_KEY,
                None,
                None,
                "coffer-test",
            ))
            .http_client(http)
            // One attempt: a retried 5xx would hide what the server answered.
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(300))
                    .build(),
            )
            .build();
        Client::from_conf(config)
    }

    /// SIGTERM, then the process must exit 0 (graceful shutdown) and must not have panicked.
    fn stop(self) {
        self.process.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies, keys and the encryption modes
// ---------------------------------------------------------------------------------------------

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut v).expect("rand");
    v
}

/// An SSE-C key with the header encodings S3 expects.
#[derive(Clone, Debug)]
struct CustomerKey {
    raw: [u8; 32],
}

impl CustomerKey {
    fn random() -> Self {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).expect("rand");
        Self { raw }
    }
    fn b64(&self) -> String {
        B64.encode(self.raw)
    }
    fn md5_raw(&self) -> Vec<u8> {
        Md5::digest(self.raw).to_vec()
    }
    fn md5(&self) -> String {
        B64.encode(self.md5_raw())
    }
}

/// How an object is encrypted, as far as the request headers go.
#[derive(Clone, Debug)]
enum Sse {
    /// No encryption header: the bucket default applies.
    Default,
    /// `x-amz-server-side-encryption: AES256`.
    S3,
    /// `aws:kms` with an optional key id/alias/ARN and an optional encryption context (JSON).
    Kms {
        key_id: Option<String>,
        context: Option<String>,
    },
    /// SSE-C.
    C(CustomerKey),
}

impl Sse {
    fn kms() -> Self {
        Sse::Kms {
            key_id: None,
            context: None,
        }
    }
    fn c() -> Self {
        Sse::C(CustomerKey::random())
    }
    fn name(&self) -> &'static str {
        match self {
            Sse::Default => "default",
            Sse::S3 => "sse-s3",
            Sse::Kms { .. } => "sse-kms",
            Sse::C(_) => "sse-c",
        }
    }
}

/// Adds the write-side encryption headers of `$sse` to a PutObject/CopyObject/
/// CreateMultipartUpload builder.
macro_rules! with_sse_write {
    ($b:expr, $sse:expr) => {{
        let b = $b;
        match $sse {
            Sse::Default => b,
            Sse::S3 => b.server_side_encryption(ServerSideEncryption::Aes256),
            Sse::Kms { key_id, context } => {
                let b = b.server_side_encryption(ServerSideEncryption::AwsKms);
                let b = match key_id {
                    Some(id) => b.ssekms_key_id(id.clone()),
                    None => b,
                };
                match context {
                    Some(json) => b.ssekms_encryption_context(B64.encode(json.as_bytes())),
                    None => b,
                }
            }
            Sse::C(k) => b
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k.b64())
                .sse_customer_key_md5(k.md5()),
        }
    }};
}

/// Adds the SSE-C headers of `$sse` (and nothing for the other modes) to a GetObject/
/// HeadObject/UploadPart/CompleteMultipartUpload builder.
macro_rules! with_sse_read {
    ($b:expr, $sse:expr) => {{
        let b = $b;
        match $sse {
            Sse::C(k) => b
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k.b64())
                .sse_customer_key_md5(k.md5()),
            _ => b,
        }
    }};
}

/// Adds the copy-source SSE-C headers of `$sse` to a CopyObject builder.
macro_rules! with_sse_copy_source {
    ($b:expr, $sse:expr) => {{
        let b = $b;
        match $sse {
            Sse::C(k) => b
                .copy_source_sse_customer_algorithm("AES256")
                .copy_source_sse_customer_key(k.b64())
                .copy_source_sse_customer_key_md5(k.md5()),
            _ => b,
        }
    }};
}

/// The encryption a response reports.
#[derive(Debug, Clone, PartialEq)]
struct Reported {
    sse: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    customer_algorithm: Option<String>,
    customer_key_md5: Option<String>,
}

macro_rules! reported {
    ($o:expr) => {{
        let o = &$o;
        Reported {
            sse: o.server_side_encryption().cloned(),
            kms_key_id: o.ssekms_key_id().map(str::to_string),
            customer_algorithm: o.sse_customer_algorithm().map(str::to_string),
            customer_key_md5: o.sse_customer_key_md5().map(str::to_string),
        }
    }};
}

/// What AWS reports for an object stored under `sse` (`bucket_kms`: the bucket default is
/// aws:kms). SSE-KMS: `aws:kms` and the key ARN; SSE-S3: `AES256` only; SSE-C: the customer
/// algorithm and key MD5, no `x-amz-server-side-encryption`.
fn assert_reports(what: &str, got: &Reported, sse: &Sse, bucket_kms: bool) {
    let kms = matches!(sse, Sse::Kms { .. }) || (matches!(sse, Sse::Default) && bucket_kms);
    match sse {
        Sse::C(k) => {
            assert_eq!(
                got.sse, None,
                "{what}: SSE-C reports no x-amz-server-side-encryption"
            );
            assert_eq!(got.kms_key_id, None, "{what}: SSE-C reports no KMS key");
            assert_eq!(got.customer_algorithm.as_deref(), Some("AES256"), "{what}");
            assert_eq!(
                got.customer_key_md5,
                Some(k.md5()),
                "{what}: key MD5 echoed"
            );
        }
        _ if kms => {
            assert_eq!(got.sse, Some(ServerSideEncryption::AwsKms), "{what}");
            let id = got.kms_key_id.as_deref().unwrap_or_else(|| {
                panic!("{what}: SSE-KMS reports x-amz-server-side-encryption-aws-kms-key-id")
            });
            assert!(
                id.starts_with("arn:aws:kms:us-east-1:") && id.contains(":key/"),
                "{what}: the KMS key id is reported as a key ARN, got {id:?}"
            );
            assert_eq!(got.customer_algorithm, None, "{what}");
        }
        _ => {
            assert_eq!(got.sse, Some(ServerSideEncryption::Aes256), "{what}");
            assert_eq!(got.kms_key_id, None, "{what}: SSE-S3 reports no KMS key");
            assert_eq!(got.customer_algorithm, None, "{what}");
        }
    }
}

/// `Err` with a description unless the request failed with this HTTP status and (if given)
/// this S3 error code.
fn s3_error<T: Debug, E: ProvideErrorMetadata + Debug>(
    what: &str,
    result: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    status: u16,
    code: Option<&str>,
) -> Result<(), String> {
    let err = match result {
        Ok(v) => {
            let v = format!("{v:?}");
            let v: String = v.chars().take(300).collect();
            return Err(format!(
                "{what}: expected HTTP {status} {code:?}, got success: {v}"
            ));
        }
        Err(e) => e,
    };
    let got_status = err.raw_response().map(|r| r.status().as_u16());
    if got_status != Some(status) || (code.is_some() && err.code() != code) {
        return Err(format!(
            "{what}: expected HTTP {status} {}, got HTTP {} {} ({:?})",
            code.unwrap_or("(no body)"),
            got_status.map_or("none".to_string(), |s| s.to_string()),
            err.code().unwrap_or("-"),
            err.message().unwrap_or(""),
        ));
    }
    Ok(())
}

/// The request failed with this HTTP status and (if given) this S3 error code.
fn assert_s3_error<T: Debug, E: ProvideErrorMetadata + Debug>(
    what: &str,
    result: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    status: u16,
    code: Option<&str>,
) {
    if let Err(e) = s3_error(what, result, status, code) {
        panic!("{e}");
    }
}

/// Collects failed checks so that one test reports every misbehaviour, not just the first.
#[derive(Default)]
struct Soft {
    failures: Vec<String>,
    passed: usize,
}

impl Soft {
    fn error<T: Debug, E: ProvideErrorMetadata + Debug>(
        &mut self,
        what: &str,
        result: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
        status: u16,
        code: Option<&str>,
    ) {
        match s3_error(what, result, status, code) {
            Ok(()) => self.passed += 1,
            Err(e) => self.failures.push(e),
        }
    }
    fn finish(self, test: &str) {
        eprintln!(
            "{test}: {} checks passed, {} failed",
            self.passed,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{test}: {} of {} checks failed:\n  {}",
            self.failures.len(),
            self.passed + self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// One object the test wrote, with everything needed to read it back and to look for it.
#[derive(Clone, Debug)]
struct Stored {
    bucket: String,
    key: String,
    body: Arc<Vec<u8>>,
    sse: Sse,
    /// Part size for multipart objects (the scan also looks at the part edges).
    part: Option<usize>,
    meta_value: Option<String>,
}

async fn create_bucket(c: &Client, bucket: &str) {
    c.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
}

async fn put(c: &Client, bucket: &str, key: &str, body: &[u8], sse: &Sse) -> Stored {
    put_in(c, bucket, key, body, sse, false).await
}

/// PutObject; `bucket_kms`: the bucket's default encryption is aws:kms.
async fn put_in(
    c: &Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    sse: &Sse,
    bucket_kms: bool,
) -> Stored {
    let meta_value = hex::encode(random_bytes(20));
    let out = with_sse_write!(
        c.put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/x-coffer-test")
            .metadata("coffer-test", &meta_value)
            .body(ByteStream::from(body.to_vec())),
        sse
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("put {bucket}/{key} ({}): {e:?}", sse.name()));
    assert_reports(&format!("put {key}"), &reported!(out), sse, bucket_kms);
    if matches!(sse, Sse::S3) {
        // SSE-S3 (like plaintext) objects from a single PUT have the MD5 of the data as ETag.
        assert_eq!(
            out.e_tag(),
            Some(format!("\"{}\"", hex::encode(Md5::digest(body))).as_str()),
            "put {key}: SSE-S3 ETag is the MD5 of the body"
        );
    }
    Stored {
        bucket: bucket.into(),
        key: key.into(),
        body: Arc::new(body.to_vec()),
        sse: sse.clone(),
        part: None,
        meta_value: Some(meta_value),
    }
}

async fn get_bytes(c: &Client, o: &Stored, range: Option<&str>) -> (Vec<u8>, Reported) {
    let out = with_sse_read!(
        c.get_object()
            .bucket(&o.bucket)
            .key(&o.key)
            .set_range(range.map(str::to_string)),
        &o.sse
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("get {}/{} range {range:?}: {e:?}", o.bucket, o.key));
    let rep = reported!(out);
    if let Some(r) = range {
        let (start, end) = resolve_range(r, o.body.len());
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {start}-{end}/{}", o.body.len()).as_str()),
            "get {} range {r}: Content-Range",
            o.key
        );
    }
    let body = out
        .body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("get {} body: {e:?}", o.key))
        .into_bytes()
        .to_vec();
    (body, rep)
}

/// GET the whole object and compare; the response reports the object's encryption.
async fn check_get(c: &Client, o: &Stored, bucket_kms: bool) {
    let (body, rep) = get_bytes(c, o, None).await;
    assert_eq!(body.len(), o.body.len(), "get {}: length", o.key);
    assert!(body == *o.body, "get {}: body differs", o.key);
    assert_reports(&format!("get {}", o.key), &rep, &o.sse, bucket_kms);
}

/// HEAD: plaintext length, metadata, content type, encryption.
async fn check_head(c: &Client, o: &Stored, bucket_kms: bool) {
    let out = with_sse_read!(c.head_object().bucket(&o.bucket).key(&o.key), &o.sse)
        .send()
        .await
        .unwrap_or_else(|e| panic!("head {}: {e:?}", o.key));
    assert_eq!(
        out.content_length(),
        Some(o.body.len() as i64),
        "head {}: Content-Length is the plaintext length",
        o.key
    );
    if let Some(v) = &o.meta_value {
        assert_eq!(
            out.metadata().and_then(|m| m.get("coffer-test")),
            Some(v),
            "head {}: user metadata",
            o.key
        );
        assert_eq!(
            out.content_type(),
            Some("application/x-coffer-test"),
            "head {}",
            o.key
        );
    }
    assert_reports(
        &format!("head {}", o.key),
        &reported!(out),
        &o.sse,
        bucket_kms,
    );
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` → inclusive (start, end) for an object of `len`.
fn resolve_range(spec: &str, len: usize) -> (usize, usize) {
    let r = spec.strip_prefix("bytes=").expect("bytes=");
    let (a, b) = r.split_once('-').expect("a-b");
    if a.is_empty() {
        let n: usize = b.parse().unwrap();
        (len - n.min(len), len - 1)
    } else {
        let start: usize = a.parse().unwrap();
        let end = if b.is_empty() {
            len - 1
        } else {
            b.parse::<usize>().unwrap().min(len - 1)
        };
        (start, end)
    }
}

async fn check_range(c: &Client, o: &Stored, spec: &str) {
    let (body, _) = get_bytes(c, o, Some(spec)).await;
    let (start, end) = resolve_range(spec, o.body.len());
    assert_eq!(
        body.len(),
        end + 1 - start,
        "range {spec} of {}: length",
        o.key
    );
    assert!(
        body == o.body[start..=end],
        "range {spec} of {}: bytes differ",
        o.key
    );
}

/// Ranges around every part edge (and 16 KiB format-chunk edges next to them), suffix and
/// open-ended ranges, the first and the last byte.
fn ranges_for(len: usize, part: usize) -> Vec<String> {
    let mut v = vec![
        "bytes=0-0".to_string(),
        format!("bytes={}-{}", len - 1, len - 1),
        "bytes=-1".to_string(),
        "bytes=-100".to_string(),
        format!("bytes=-{}", len - part + 7), // suffix reaching back into the first part
        format!("bytes={}-", len - part - 3), // open-ended across the last edge
        format!("bytes=0-{}", len + 1000),    // end past the object: clamped
    ];
    let mut edge = part;
    while edge < len {
        v.push(format!("bytes={}-{}", edge - 10, edge + 9));
        v.push(format!("bytes={}-{}", edge - 1, edge)); // the two bytes either side
        v.push(format!("bytes={}-{}", edge, (edge + part - 1).min(len - 1))); // a whole part
        v.push(format!(
            "bytes={}-{}",
            edge.saturating_sub(16384 + 1),
            (edge + 16384 + 1).min(len - 1)
        ));
        edge += part;
    }
    v
}

async fn multipart(
    c: &Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    part: usize,
    sse: &Sse,
) -> Stored {
    multipart_in(c, bucket, key, body, part, sse, false).await
}

async fn multipart_in(
    c: &Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    part: usize,
    sse: &Sse,
    bucket_kms: bool,
) -> Stored {
    let created = with_sse_write!(
        c.create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type("application/x-coffer-test")
            .metadata("coffer-test", "multipart"),
        sse
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("create multipart {key} ({}): {e:?}", sse.name()));
    assert_reports(
        &format!("create multipart {key}"),
        &reported!(created),
        sse,
        bucket_kms,
    );
    let upload_id = created.upload_id().expect("upload id").to_string();
    let mut parts = Vec::new();
    for (i, chunk) in body.chunks(part).enumerate() {
        let n = i as i32 + 1;
        let out = with_sse_read!(
            c.upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(n)
                .body(ByteStream::from(chunk.to_vec())),
            sse
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload part {n} of {key}: {e:?}"));
        assert_reports(
            &format!("upload part {n} of {key}"),
            &reported!(out),
            sse,
            bucket_kms,
        );
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().expect("part etag"))
                .build(),
        );
    }
    let n_parts = parts.len();
    let done = with_sse_read!(
        c.complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build()
            ),
        sse
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("complete multipart {key}: {e:?}"));
    let etag = done.e_tag().expect("etag").to_string();
    assert!(
        etag.trim_matches('"').ends_with(&format!("-{n_parts}")),
        "complete {key}: multipart ETag ends in -{n_parts}: {etag}"
    );
    if !matches!(sse, Sse::C(_)) {
        // CompleteMultipartUpload reports SSE-S3/SSE-KMS (it has no SSE-C response headers).
        let got = Reported {
            sse: done.server_side_encryption().cloned(),
            kms_key_id: done.ssekms_key_id().map(str::to_string),
            customer_algorithm: None,
            customer_key_md5: None,
        };
        assert_reports(&format!("complete {key}"), &got, sse, bucket_kms);
    }
    Stored {
        bucket: bucket.into(),
        key: key.into(),
        body: Arc::new(body.to_vec()),
        sse: sse.clone(),
        part: Some(part),
        meta_value: None,
    }
}

async fn copy(c: &Client, src: &Stored, bucket: &str, key: &str, sse: &Sse) -> Stored {
    copy_in(c, src, bucket, key, sse, false).await
}

async fn copy_in(
    c: &Client,
    src: &Stored,
    bucket: &str,
    key: &str,
    sse: &Sse,
    bucket_kms: bool,
) -> Stored {
    let out = with_sse_copy_source!(
        with_sse_write!(
            c.copy_object()
                .bucket(bucket)
                .key(key)
                .copy_source(format!("{}/{}", src.bucket, src.key)),
            sse
        ),
        &src.sse
    )
    .send()
    .await
    .unwrap_or_else(|e| {
        panic!(
            "copy {} ({}) → {key} ({}): {e:?}",
            src.key,
            src.sse.name(),
            sse.name()
        )
    });
    assert_reports(&format!("copy → {key}"), &reported!(out), sse, bucket_kms);
    Stored {
        bucket: bucket.into(),
        key: key.into(),
        body: Arc::clone(&src.body),
        sse: sse.clone(),
        part: src.part,
        meta_value: src.meta_value.clone(),
    }
}

async fn list_sizes(c: &Client, bucket: &str, prefix: &str) -> BTreeMap<String, i64> {
    let out = c
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap_or_else(|e| panic!("list {bucket}/{prefix}: {e:?}"));
    out.contents()
        .iter()
        .map(|o| (o.key().unwrap().to_string(), o.size().unwrap()))
        .collect()
}

async fn delete_and_check_gone(c: &Client, o: &Stored) {
    c.delete_object()
        .bucket(&o.bucket)
        .key(&o.key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete {}: {e:?}", o.key));
    assert_s3_error(
        &format!("get deleted {}", o.key),
        with_sse_read!(c.get_object().bucket(&o.bucket).key(&o.key), &o.sse)
            .send()
            .await,
        404,
        Some("NoSuchKey"),
    );
    assert_s3_error(
        &format!("head deleted {}", o.key),
        with_sse_read!(c.head_object().bucket(&o.bucket).key(&o.key), &o.sse)
            .send()
            .await,
        404,
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// Scanning the data directory
// ---------------------------------------------------------------------------------------------

/// Byte strings that must not appear in any file of the data directory.
#[derive(Default)]
struct Needles {
    items: Vec<(String, Vec<u8>)>,
}

impl Needles {
    fn add(&mut self, label: String, bytes: &[u8]) {
        assert!(bytes.len() >= 16, "needle {label} too short");
        self.items.push((label, bytes.to_vec()));
    }

    /// Several 32-byte windows of a body: start, middle, end, and around part edges.
    fn add_body(&mut self, o: &Stored) {
        let b = &o.body;
        let mut offsets = vec![0, b.len() / 3, b.len() / 2, b.len() - 32];
        if let Some(p) = o.part {
            let mut e = p;
            while e < b.len() {
                offsets.extend([e - 16, e, e + p / 2]);
                e += p;
            }
        }
        for off in offsets {
            let off = off.min(b.len() - 32);
            self.add(
                format!("plaintext of {}/{} at {off}", o.bucket, o.key),
                &b[off..off + 32],
            );
        }
        if let Some(v) = &o.meta_value {
            self.add(format!("user metadata of {}", o.key), v.as_bytes());
        }
        // The plaintext's MD5 (the ETag) is object metadata, stored encrypted (docs/server.md).
        let md5 = Md5::digest(&b[..]);
        self.add(format!("MD5 of {} (raw)", o.key), &md5);
        self.add(
            format!("MD5 of {} (hex)", o.key),
            hex::encode(md5).as_bytes(),
        );
    }

    fn add_customer_key(&mut self, k: &CustomerKey) {
        self.add("SSE-C key (raw)".into(), &k.raw);
        self.add("SSE-C key (base64)".into(), k.b64().as_bytes());
        self.add("SSE-C key (hex)".into(), hex::encode(k.raw).as_bytes());
        // The server keeps only a keyed fingerprint, never the bare MD5 the client sends.
        self.add("SSE-C key MD5 (raw)".into(), &k.md5_raw());
        self.add("SSE-C key MD5 (base64)".into(), k.md5().as_bytes());
    }

    /// Every (file, needle) pair where the needle occurs. Files named `root.key` are skipped:
    /// that is the root sealing key, stored as a key file by design.
    fn scan(&self, dir: &Path) -> (usize, u64, Vec<String>) {
        let mut first2 = vec![false; 1 << 16];
        let mut by_prefix: HashMap<u16, Vec<usize>> = HashMap::new();
        for (i, (_, n)) in self.items.iter().enumerate() {
            let p = u16::from_be_bytes([n[0], n[1]]);
            first2[p as usize] = true;
            by_prefix.entry(p).or_default().push(i);
        }
        let (mut files, mut bytes, mut found) = (0usize, 0u64, Vec::new());
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir") {
                let e = e.expect("entry");
                let path = e.path();
                let ft = e.file_type().expect("file type");
                if ft.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !ft.is_file() || path == dir.join("root.key") {
                    continue;
                }
                let mut data = Vec::new();
                fs::File::open(&path)
                    .and_then(|mut f| f.read_to_end(&mut data))
                    .expect("read file");
                files += 1;
                bytes += data.len() as u64;
                if data.len() < 16 {
                    continue;
                }
                for i in 0..data.len() - 1 {
                    let p = u16::from_be_bytes([data[i], data[i + 1]]);
                    if !first2[p as usize] {
                        continue;
                    }
                    for &n in &by_prefix[&p] {
                        let (label, needle) = &self.items[n];
                        if data[i..].starts_with(needle) {
                            found.push(format!("{label} found in {} at {i}", path.display()));
                        }
                    }
                }
            }
        }
        (files, bytes, found)
    }
}

/// Regular files under `dir` with their length and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.expect("entry");
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                out.insert(e.path(), (m.len(), m.modified().expect("mtime")));
            }
        }
    }
    out
}

fn flip_bit(path: &Path, offset: u64) {
    let mut data = fs::read(path).expect("read blob");
    data[offset as usize] ^= 0x10;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open blob");
    f.write_all(&data).expect("write blob");
    f.sync_all().expect("sync");
}

/// What a GET of a tampered object did. Every variant but `Complete` is a failure the client
/// sees; `Complete` and the bytes before an abort are checked against the original.
enum Tampered {
    Refused(String),
    Aborted { received: usize, error: String },
    Complete,
}

impl Tampered {
    fn failed(&self) -> bool {
        !matches!(self, Tampered::Complete)
    }
}

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tampered::Refused(e) => write!(f, "refused: {e}"),
            Tampered::Aborted { received, error } => {
                write!(f, "aborted after {received} correct bytes: {error}")
            }
            Tampered::Complete => write!(f, "complete with the original bytes"),
        }
    }
}

/// GET (a range of) a tampered object, streaming the body. Panics if any byte delivered
/// differs from the original: altered bytes must never reach the client.
async fn get_tampered(c: &Client, o: &Stored, range: Option<&str>) -> Tampered {
    let res = with_sse_read!(
        c.get_object()
            .bucket(&o.bucket)
            .key(&o.key)
            .set_range(range.map(str::to_string)),
        &o.sse
    )
    .send()
    .await;
    let mut out = match res {
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            return Tampered::Refused(format!("HTTP {status:?} {:?}", e.code()));
        }
        Ok(out) => out,
    };
    let (start, end) = range.map_or((0, o.body.len() - 1), |r| resolve_range(r, o.body.len()));
    let expected = &o.body[start..=end];
    let mut got = Vec::new();
    let error = loop {
        match out.body.next().await {
            None => break None,
            Some(Ok(chunk)) => got.extend_from_slice(&chunk),
            Some(Err(e)) => break Some(e.to_string()),
        }
    };
    assert!(
        got.len() <= expected.len() && got[..] == expected[..got.len()],
        "GET {:?} of tampered {}: ALTERED bytes delivered ({} bytes received)",
        range,
        o.key,
        got.len()
    );
    match error {
        Some(error) => Tampered::Aborted {
            received: got.len(),
            error,
        },
        None if got.len() < expected.len() => Tampered::Aborted {
            received: got.len(),
            error: "body ended early".into(),
        },
        None => Tampered::Complete,
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// put/get/head/list/copy/delete for each SSE mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sse_mode_put_get_head_list_copy_delete() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    create_bucket(&c, "modes").await;

    let modes = [Sse::Default, Sse::S3, Sse::kms(), Sse::c()];
    let mut stored = Vec::new();
    for sse in &modes {
        let key = format!("obj/{}", sse.name());
        let o = put(&c, "modes", &key, &random_bytes(SMALL_LEN), sse).await;
        check_get(&c, &o, false).await;
        check_head(&c, &o, false).await;
        check_range(&c, &o, "bytes=16380-16390").await;
        stored.push(o);
    }
    // An empty object in every mode.
    for sse in &modes {
        let key = format!("empty/{}", sse.name());
        let o = put(&c, "modes", &key, &[], sse).await;
        let (body, rep) = get_bytes(&c, &o, None).await;
        assert!(body.is_empty(), "empty object {key}");
        assert_reports(&key, &rep, sse, false);
    }

    // The default KMS key is alias/aws/s3 (created on demand, as AWS does): naming it, or the
    // ARN a response reported, uses the same key.
    let default_arn = {
        let (_, rep) = get_bytes(&c, &stored[2], None).await;
        rep.kms_key_id.expect("kms key id")
    };
    for id in ["alias/aws/s3".to_string(), default_arn.clone()] {
        let sse = Sse::Kms {
            key_id: Some(id.clone()),
            context: Some(r#"{"project":"coffer","purpose":"test"}"#.into()),
        };
        let o = put(&c, "modes", "named/kms", &random_bytes(SMALL_LEN), &sse).await;
        let (body, rep) = get_bytes(&c, &o, None).await;
        assert!(body == *o.body, "kms named {id}");
        assert_eq!(
            rep.kms_key_id.as_deref(),
            Some(default_arn.as_str()),
            "key {id} is the default key"
        );
    }

    let listed = list_sizes(&c, "modes", "obj/").await;
    for o in &stored {
        assert_eq!(
            listed.get(&o.key),
            Some(&(o.body.len() as i64)),
            "ListObjectsV2 shows {} with its plaintext size",
            o.key
        );
    }

    // Copy within the same mode (other modes: copy_between_every_pair_of_modes).
    for o in &stored {
        let dst = copy(&c, o, "modes", &format!("copy/{}", o.key), &o.sse).await;
        check_get(&c, &dst, false).await;
    }

    for o in &stored {
        delete_and_check_gone(&c, o).await;
    }
    assert!(
        list_sizes(&c, "modes", "obj/").await.is_empty(),
        "all deleted"
    );
    server.stop();
    dirs.assert_nothing_written_outside_data();
}

/// 30 MiB multipart uploads with 5 MiB parts and with unaligned (5 MiB + 1) parts in every
/// mode; full GETs and ranged GETs across part edges, incl. suffix ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_aligned_and_unaligned_with_ranged_gets() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    create_bucket(&c, "mpu").await;
    for sse in [Sse::S3, Sse::kms(), Sse::c()] {
        for part in [PART, PART + 1] {
            let key = format!("{}/{}", sse.name(), part);
            let o = multipart(&c, "mpu", &key, &random_bytes(MULTIPART_LEN), part, &sse).await;
            check_get(&c, &o, false).await;
            let head = with_sse_read!(c.head_object().bucket("mpu").key(&key), &sse)
                .send()
                .await
                .expect("head");
            assert_eq!(
                head.content_length(),
                Some(MULTIPART_LEN as i64),
                "head {key}"
            );
            assert_reports(&format!("head {key}"), &reported!(head), &sse, false);
            for r in ranges_for(MULTIPART_LEN, part) {
                check_range(&c, &o, &r).await;
            }
        }
    }
    let listed = list_sizes(&c, "mpu", "").await;
    assert_eq!(listed.len(), 6);
    assert!(
        listed.values().all(|&s| s == MULTIPART_LEN as i64),
        "{listed:?}"
    );
    server.stop();
    dirs.assert_nothing_written_outside_data();
}

/// CopyObject from every mode to every mode (SSE-C → SSE-C with another key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_between_every_pair_of_modes() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    create_bucket(&c, "src").await;
    create_bucket(&c, "dst").await;
    let modes = || [Sse::S3, Sse::kms(), Sse::c()];
    for from in modes() {
        let src = put(
            &c,
            "src",
            &format!("from-{}", from.name()),
            &random_bytes(SMALL_LEN),
            &from,
        )
        .await;
        for to in modes() {
            let key = format!("{}-to-{}", from.name(), to.name());
            let dst = copy(&c, &src, "dst", &key, &to).await;
            check_get(&c, &dst, false).await;
            check_head(&c, &dst, false).await;
            if let (Sse::C(_), Sse::C(_)) = (&from, &to) {
                // The copy is readable under its new key only.
                assert_s3_error(
                    "get SSE-C copy with the source's key",
                    with_sse_read!(c.get_object().bucket("dst").key(&key), &from)
                        .send()
                        .await,
                    403,
                    Some("AccessDenied"),
                );
            }
        }
        // The source is unchanged.
        check_get(&c, &src, false).await;
    }
    // A multipart source copied into another mode.
    let big = multipart(
        &c,
        "src",
        "big",
        &random_bytes(12 * MIB + 5),
        PART + 1,
        &Sse::c(),
    )
    .await;
    let dst = copy(&c, &big, "dst", "big-to-kms", &Sse::kms()).await;
    check_get(&c, &dst, false).await;
    check_range(&c, &dst, &format!("bytes={}-{}", PART - 5, PART + 5)).await;
    server.stop();
    dirs.assert_nothing_written_outside_data();
}

/// Every SSE-C / SSE-KMS misuse gets AWS's status and code (sources in the file header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_and_kms_error_cases() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    create_bucket(&c, "errs").await;
    let key = CustomerKey::random();
    let ssec = put(
        &c,
        "errs",
        "ssec",
        &random_bytes(SMALL_LEN),
        &Sse::C(key.clone()),
    )
    .await;
    let kms = put(&c, "errs", "kms", &random_bytes(SMALL_LEN), &Sse::kms()).await;
    let s3 = put(&c, "errs", "s3", &random_bytes(SMALL_LEN), &Sse::S3).await;
    let wrong = CustomerKey::random();
    let mut soft = Soft::default();

    // Missing key on GET → 400 InvalidRequest; on HEAD → 400 (HEAD responses have no body).
    soft.error(
        "GET SSE-C object without key",
        c.get_object().bucket("errs").key("ssec").send().await,
        400,
        Some("InvalidRequest"),
    );
    soft.error(
        "HEAD SSE-C object without key",
        c.head_object().bucket("errs").key("ssec").send().await,
        400,
        None,
    );
    // Wrong key → 403 AccessDenied.
    soft.error(
        "GET SSE-C object with the wrong key",
        with_sse_read!(
            c.get_object().bucket("errs").key("ssec"),
            &Sse::C(wrong.clone())
        )
        .send()
        .await,
        403,
        Some("AccessDenied"),
    );
    soft.error(
        "HEAD SSE-C object with the wrong key",
        with_sse_read!(
            c.head_object().bucket("errs").key("ssec"),
            &Sse::C(wrong.clone())
        )
        .send()
        .await,
        403,
        None,
    );
    soft.error(
        "ranged GET SSE-C object with the wrong key",
        with_sse_read!(
            c.get_object()
                .bucket("errs")
                .key("ssec")
                .range("bytes=0-10"),
            &Sse::C(wrong.clone())
        )
        .send()
        .await,
        403,
        Some("AccessDenied"),
    );
    // Key MD5 that does not match the key → 400 InvalidArgument (GET and PUT).
    soft.error(
        "GET SSE-C with mismatched key MD5",
        c.get_object()
            .bucket("errs")
            .key("ssec")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(key.b64())
            .sse_customer_key_md5(wrong.md5())
            .send()
            .await,
        400,
        Some("InvalidArgument"),
    );
    soft.error(
        "PUT SSE-C with mismatched key MD5",
        c.put_object()
            .bucket("errs")
            .key("md5-mismatch")
            .body(ByteStream::from_static(b"x"))
            .sse_customer_algorithm("AES256")
            .sse_customer_key(key.b64())
            .sse_customer_key_md5(wrong.md5())
            .send()
            .await,
        400,
        Some("InvalidArgument"),
    );
    // A key that is not 256 bits → 400 InvalidArgument.
    let short = [7u8; 16];
    soft.error(
        "PUT SSE-C with a 128-bit key",
        c.put_object()
            .bucket("errs")
            .key("short-key")
            .body(ByteStream::from_static(b"x"))
            .sse_customer_algorithm("AES256")
            .sse_customer_key(B64.encode(short))
            .sse_customer_key_md5(B64.encode(Md5::digest(short)))
            .send()
            .await,
        400,
        Some("InvalidArgument"),
    );
    // SSE-C together with aws:kms (or AES256) → 400 InvalidArgument.
    for sse in [ServerSideEncryption::AwsKms, ServerSideEncryption::Aes256] {
        soft.error(
            &format!("PUT SSE-C together with {sse:?}"),
            with_sse_read!(
                c.put_object()
                    .bucket("errs")
                    .key("both")
                    .body(ByteStream::from_static(b"x"))
                    .server_side_encryption(sse.clone()),
                &Sse::C(key.clone())
            )
            .send()
            .await,
            400,
            Some("InvalidArgument"),
        );
    }
    // KMS / SSE-S3 headers on GET → 400 InvalidArgument, for SSE-KMS and SSE-S3 objects.
    for (o, value) in [(&kms, "aws:kms"), (&s3, "AES256")] {
        let value = value.to_string();
        soft.error(
            &format!("GET {} with x-amz-server-side-encryption: {value}", o.key),
            c.get_object()
                .bucket("errs")
                .key(&o.key)
                .customize()
                .mutate_request(move |req| {
                    req.headers_mut()
                        .insert("x-amz-server-side-encryption", value.clone());
                })
                .send()
                .await,
            400,
            Some("InvalidArgument"),
        );
    }
    soft.error(
        "GET SSE-KMS object with x-amz-server-side-encryption-aws-kms-key-id",
        c.get_object()
            .bucket("errs")
            .key("kms")
            .customize()
            .mutate_request(|req| {
                req.headers_mut()
                    .insert("x-amz-server-side-encryption", "aws:kms");
                req.headers_mut().insert(
                    "x-amz-server-side-encryption-aws-kms-key-id",
                    "alias/aws/s3",
                );
            })
            .send()
            .await,
        400,
        Some("InvalidArgument"),
    );
    // SSE-C headers on an object that is not SSE-C → 400 InvalidRequest.
    soft.error(
        "GET SSE-S3 object with SSE-C headers",
        with_sse_read!(
            c.get_object().bucket("errs").key("s3"),
            &Sse::C(key.clone())
        )
        .send()
        .await,
        400,
        Some("InvalidRequest"),
    );
    // Unknown KMS key → 400 KMS.NotFoundException (PUT, multipart create, copy destination).
    let missing = Sse::Kms {
        key_id: Some("alias/coffer-test-no-such-key".into()),
        context: None,
    };
    soft.error(
        "PUT with an unknown KMS alias",
        with_sse_write!(
            c.put_object()
                .bucket("errs")
                .key("nokey")
                .body(ByteStream::from_static(b"x")),
            &missing
        )
        .send()
        .await,
        400,
        Some("KMS.NotFoundException"),
    );
    soft.error(
        "CreateMultipartUpload with an unknown KMS alias",
        with_sse_write!(
            c.create_multipart_upload().bucket("errs").key("nokey"),
            &missing
        )
        .send()
        .await,
        400,
        Some("KMS.NotFoundException"),
    );
    soft.error(
        "CopyObject to an unknown KMS alias",
        with_sse_write!(
            c.copy_object()
                .bucket("errs")
                .key("nokey")
                .copy_source("errs/s3"),
            &missing
        )
        .send()
        .await,
        400,
        Some("KMS.NotFoundException"),
    );
    // Copy from an SSE-C source without / with the wrong copy-source key.
    soft.error(
        "copy SSE-C source without copy-source key",
        c.copy_object()
            .bucket("errs")
            .key("copy-nokey")
            .copy_source("errs/ssec")
            .send()
            .await,
        400,
        Some("InvalidRequest"),
    );
    soft.error(
        "copy SSE-C source with the wrong copy-source key",
        with_sse_copy_source!(
            c.copy_object()
                .bucket("errs")
                .key("copy-wrong")
                .copy_source("errs/ssec"),
            &Sse::C(wrong.clone())
        )
        .send()
        .await,
        403,
        Some("AccessDenied"),
    );
    // A part of an SSE-C upload without the SSE-C headers → 400 InvalidRequest.
    let created = with_sse_write!(
        c.create_multipart_upload().bucket("errs").key("mpu-ssec"),
        &Sse::C(key.clone())
    )
    .send()
    .await
    .expect("create SSE-C upload");
    soft.error(
        "UploadPart of an SSE-C upload without SSE-C headers",
        c.upload_part()
            .bucket("errs")
            .key("mpu-ssec")
            .upload_id(created.upload_id().unwrap())
            .part_number(1)
            .body(ByteStream::from(random_bytes(1024)))
            .send()
            .await,
        400,
        Some("InvalidRequest"),
    );
    soft.error(
        "UploadPart of an SSE-C upload with a different key",
        with_sse_read!(
            c.upload_part()
                .bucket("errs")
                .key("mpu-ssec")
                .upload_id(created.upload_id().unwrap())
                .part_number(1)
                .body(ByteStream::from(random_bytes(1024))),
            &Sse::C(wrong.clone())
        )
        .send()
        .await,
        400,
        Some("InvalidRequest"),
    );
    // A KMS key id without aws:kms → 400 InvalidArgument (alone, and with AES256).
    soft.error(
        "PUT with a KMS key id but no x-amz-server-side-encryption",
        c.put_object()
            .bucket("errs")
            .key("kms-id-only")
            .body(ByteStream::from_static(b"x"))
            .ssekms_key_id("alias/aws/s3")
            .send()
            .await,
        400,
        Some("InvalidArgument"),
    );
    soft.error(
        "PUT with AES256 and a KMS key id",
        c.put_object()
            .bucket("errs")
            .key("kms-id-aes")
            .body(ByteStream::from_static(b"x"))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .ssekms_key_id("alias/aws/s3")
            .send()
            .await,
        400,
        Some("InvalidArgument"),
    );
    // Nothing was stored by the refused requests, and the object still reads with its key.
    let listed: Vec<String> = list_sizes(&c, "errs", "").await.into_keys().collect();
    if listed != ["kms", "s3", "ssec"] {
        soft.failures.push(format!(
            "refused writes stored objects: the bucket holds {listed:?}"
        ));
    }
    check_get(&c, &ssec, false).await;
    server.stop();
    soft.finish("sse_c_and_kms_error_cases");
    dirs.assert_nothing_written_outside_data();
}

/// Put/Get/DeleteBucketEncryption and what an object without headers gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_default_encryption() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    create_bucket(&c, "bde").await;

    let algorithm =
        |out: aws_sdk_s3::operation::get_bucket_encryption::GetBucketEncryptionOutput| {
            let rules = out
                .server_side_encryption_configuration()
                .expect("configuration")
                .rules();
            assert_eq!(rules.len(), 1, "{rules:?}");
            let d = rules[0]
                .apply_server_side_encryption_by_default()
                .expect("default rule");
            (
                d.sse_algorithm().clone(),
                d.kms_master_key_id().map(str::to_string),
            )
        };
    // Every bucket starts with SSE-S3 as its default.
    let got = algorithm(
        c.get_bucket_encryption()
            .bucket("bde")
            .send()
            .await
            .expect("get encryption"),
    );
    assert_eq!(got.0, ServerSideEncryption::Aes256, "new bucket default");
    let before = put(&c, "bde", "before", &random_bytes(SMALL_LEN), &Sse::Default).await;
    check_head(&c, &before, false).await;

    // Default aws:kms (no key id: the AWS managed key).
    c.put_bucket_encryption()
        .bucket("bde")
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put bucket encryption");
    let got = algorithm(
        c.get_bucket_encryption()
            .bucket("bde")
            .send()
            .await
            .expect("get encryption"),
    );
    assert_eq!(
        got.0,
        ServerSideEncryption::AwsKms,
        "after PutBucketEncryption aws:kms"
    );

    // No headers → aws:kms, reported on PUT, GET and HEAD.
    let body = random_bytes(SMALL_LEN);
    let out = c
        .put_object()
        .bucket("bde")
        .key("kms-default")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put without headers");
    assert_reports(
        "put into aws:kms bucket",
        &reported!(out),
        &Sse::Default,
        true,
    );
    let o = Stored {
        bucket: "bde".into(),
        key: "kms-default".into(),
        body: Arc::new(body),
        sse: Sse::Default,
        part: None,
        meta_value: None,
    };
    check_get(&c, &o, true).await;
    check_head(&c, &o, true).await;
    // A multipart upload without headers gets the default too.
    let m = multipart_in(
        &c,
        "bde",
        "kms-default-mpu",
        &random_bytes(PART + 100),
        PART,
        &Sse::Default,
        true,
    )
    .await;
    check_head(&c, &m, true).await;
    // Explicit headers win over the default.
    let s3 = put(&c, "bde", "explicit-s3", &random_bytes(SMALL_LEN), &Sse::S3).await;
    check_head(&c, &s3, true).await;
    let ssec = put(&c, "bde", "explicit-c", &random_bytes(SMALL_LEN), &Sse::c()).await;
    check_head(&c, &ssec, true).await;
    // Copy without headers into the aws:kms-default bucket → aws:kms.
    let copied = copy_in(&c, &s3, "bde", "copied-default", &Sse::Default, true).await;
    check_head(&c, &copied, true).await;

    // Delete resets to SSE-S3; objects keep what they were stored with.
    c.delete_bucket_encryption()
        .bucket("bde")
        .send()
        .await
        .expect("delete bucket encryption");
    let got = algorithm(
        c.get_bucket_encryption()
            .bucket("bde")
            .send()
            .await
            .expect("get encryption"),
    );
    assert_eq!(
        got.0,
        ServerSideEncryption::Aes256,
        "after DeleteBucketEncryption"
    );
    let after = put(&c, "bde", "after", &random_bytes(SMALL_LEN), &Sse::Default).await;
    check_head(&c, &after, false).await;
    check_get(&c, &o, true).await;
    check_get(&c, &before, false).await;
    server.stop();
    dirs.assert_nothing_written_outside_data();
}

/// Issue 14 with the Rust SDK: bucket lifecycle and CORS round-trip, ACLs read as the
/// owner's and refuse public grants, new buckets block public access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_configuration_lifecycle_cors_acl_and_public_access() {
    use aws_sdk_s3::types::{
        BucketCannedAcl, BucketLifecycleConfiguration, CorsConfiguration, CorsRule,
        ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, Permission,
    };
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    create_bucket(&c, "conf").await;
    let rule = LifecycleRule::builder()
        .id("logs")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
        .expiration(LifecycleExpiration::builder().days(30).build())
        .build()
        .unwrap();
    c.put_bucket_lifecycle_configuration()
        .bucket("conf")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put lifecycle");
    let lc = c
        .get_bucket_lifecycle_configuration()
        .bucket("conf")
        .send()
        .await
        .expect("get lifecycle");
    assert_eq!(lc.rules()[0].id(), Some("logs"));
    assert_eq!(lc.rules()[0].expiration().and_then(|e| e.days()), Some(30));
    c.put_bucket_cors()
        .bucket("conf")
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(
                    CorsRule::builder()
                        .allowed_origins("https://app.test")
                        .allowed_methods("GET")
                        .max_age_seconds(60)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put cors");
    let cors = c
        .get_bucket_cors()
        .bucket("conf")
        .send()
        .await
        .expect("get cors");
    assert_eq!(cors.cors_rules()[0].allowed_origins(), ["https://app.test"]);
    let acl = c
        .get_bucket_acl()
        .bucket("conf")
        .send()
        .await
        .expect("get acl");
    let owner = acl
        .owner()
        .and_then(|o| o.id())
        .expect("owner id")
        .to_owned();
    assert_eq!(owner.len(), 64, "a canonical id: {owner}");
    assert_eq!(acl.grants()[0].permission(), Some(&Permission::FullControl));
    assert_s3_error(
        "a public-read bucket ACL",
        c.put_bucket_acl()
            .bucket("conf")
            .acl(BucketCannedAcl::PublicRead)
            .send()
            .await,
        400,
        Some("AccessControlListNotSupported"),
    );
    let pab = c
        .get_public_access_block()
        .bucket("conf")
        .send()
        .await
        .expect("get public access block");
    let conf = pab
        .public_access_block_configuration()
        .expect("configuration");
    assert_eq!(
        (conf.block_public_policy(), conf.restrict_public_buckets()),
        (Some(true), Some(true)),
        "new buckets block public access"
    );
    assert_s3_error(
        "a public policy under BlockPublicPolicy",
        c.put_bucket_policy()
            .bucket("conf")
            .policy(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::conf/*"}]}"#,
            )
            .send()
            .await,
        403,
        Some("AccessDenied"),
    );
    server.stop();
}

/// Issue 14 with the Rust SDK: versions and delete markers in a versioned bucket, an Object
/// Lock bucket whose COMPLIANCE version root cannot delete (GOVERNANCE only with the
/// bypass), and object tags on PUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_object_lock_and_tags() {
    use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode};
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    c.create_bucket()
        .bucket("worm")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create lock bucket");
    let versioning = c
        .get_bucket_versioning()
        .bucket("worm")
        .send()
        .await
        .expect("get versioning");
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    let until =
        aws_sdk_s3::primitives::DateTime::from(SystemTime::now() + Duration::from_secs(3600));
    let mut ids = Vec::new();
    for (body, mode) in [
        (&b"first"[..], ObjectLockMode::Compliance),
        (&b"second"[..], ObjectLockMode::Governance),
    ] {
        let out = c
            .put_object()
            .bucket("worm")
            .key("backup")
            .body(ByteStream::from(body.to_vec()))
            .object_lock_mode(mode)
            .object_lock_retain_until_date(until)
            .tagging("kind=pack")
            .send()
            .await
            .expect("put locked version");
        ids.push(out.version_id().expect("version id").to_owned());
    }
    assert_ne!(ids[0], ids[1], "each PUT is its own version");
    let first = c
        .get_object()
        .bucket("worm")
        .key("backup")
        .version_id(&ids[0])
        .send()
        .await
        .expect("get first version");
    assert_eq!(first.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    assert_eq!(first.tag_count(), Some(1));
    assert_eq!(
        first
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .as_ref(),
        b"first"
    );
    assert_s3_error(
        "delete a COMPLIANCE version as root, with the bypass",
        c.delete_object()
            .bucket("worm")
            .key("backup")
            .version_id(&ids[0])
            .bypass_governance_retention(true)
            .send()
            .await,
        403,
        Some("AccessDenied"),
    );
    assert_s3_error(
        "delete a GOVERNANCE version without the bypass",
        c.delete_object()
            .bucket("worm")
            .key("backup")
            .version_id(&ids[1])
            .send()
            .await,
        403,
        Some("AccessDenied"),
    );
    c.delete_object()
        .bucket("worm")
        .key("backup")
        .version_id(&ids[1])
        .bypass_governance_retention(true)
        .send()
        .await
        .expect("the bypass removes a GOVERNANCE version");
    let marker = c
        .delete_object()
        .bucket("worm")
        .key("backup")
        .send()
        .await
        .expect("a delete marker over a locked version");
    assert_eq!(marker.delete_marker(), Some(true));
    assert_s3_error(
        "GET behind a delete marker",
        c.get_object().bucket("worm").key("backup").send().await,
        404,
        Some("NoSuchKey"),
    );
    let listing = c
        .list_object_versions()
        .bucket("worm")
        .send()
        .await
        .expect("list versions");
    let versions: Vec<&str> = listing
        .versions()
        .iter()
        .filter_map(|v| v.version_id())
        .collect();
    assert_eq!(
        versions,
        [ids[0].as_str()],
        "the COMPLIANCE version survives"
    );
    assert_eq!(listing.delete_markers().len(), 1);
    assert_eq!(
        listing.delete_markers()[0].version_id(),
        marker.version_id(),
        "the marker is listed"
    );
    c.put_object_legal_hold()
        .bucket("worm")
        .key("backup")
        .version_id(&ids[0])
        .legal_hold(
            aws_sdk_s3::types::ObjectLockLegalHold::builder()
                .status(ObjectLockLegalHoldStatus::On)
                .build(),
        )
        .send()
        .await
        .expect("legal hold on");
    let hold = c
        .get_object_legal_hold()
        .bucket("worm")
        .key("backup")
        .version_id(&ids[0])
        .send()
        .await
        .expect("get legal hold");
    assert_eq!(
        hold.legal_hold().and_then(|h| h.status()),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    server.stop();
}

/// Bucket listing and deletion as the Rust SDK drives them: `ListBuckets` pages by
/// `max_buckets` with its continuation token and filters by prefix; `DeleteBucket` deletes a
/// bucket holding only an unfinished multipart upload (aborting it), but not one holding an
/// object; a completion repeated after success answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_listing_pages_and_deletion_aborts_uploads() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    let names: Vec<String> = (0..5).map(|i| format!("page-{i}")).collect();
    for n in &names {
        create_bucket(&c, n).await;
    }
    create_bucket(&c, "other").await;
    let (mut seen, mut token, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let out = c
            .list_buckets()
            .max_buckets(2)
            .prefix("page-")
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list buckets");
        let page: Vec<String> = out
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_owned))
            .collect();
        assert!(page.len() <= 2, "{page:?}");
        seen.extend(page);
        pages += 1;
        token = out.continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!((seen, pages), (names.clone(), 3));

    let up = c
        .create_multipart_upload()
        .bucket("page-0")
        .key("x")
        .send()
        .await
        .expect("create upload");
    let id = up.upload_id().expect("upload id").to_owned();
    c.upload_part()
        .bucket("page-0")
        .key("x")
        .upload_id(&id)
        .part_number(1)
        .body(random_bytes(1000).into())
        .send()
        .await
        .expect("upload part");
    c.put_object()
        .bucket("other")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .expect("put");
    let refused = c.delete_bucket().bucket("other").send().await;
    assert_eq!(
        refused
            .expect_err("a bucket with an object is not deleted")
            .into_service_error()
            .meta()
            .code(),
        Some("BucketNotEmpty")
    );
    c.delete_bucket()
        .bucket("page-0")
        .send()
        .await
        .expect("a bucket with only an unfinished upload is deleted");
    create_bucket(&c, "page-0").await;
    let uploads = c
        .list_multipart_uploads()
        .bucket("page-0")
        .send()
        .await
        .expect("list uploads");
    assert!(uploads.uploads().is_empty(), "{uploads:?}");

    // Completion, then the same completion again (a retry after a lost response).
    let id = c
        .create_multipart_upload()
        .bucket("other")
        .key("m")
        .send()
        .await
        .expect("create upload")
        .upload_id()
        .expect("upload id")
        .to_owned();
    let part = c
        .upload_part()
        .bucket("other")
        .key("m")
        .upload_id(&id)
        .part_number(1)
        .body(random_bytes(1000).into())
        .send()
        .await
        .expect("upload part");
    let done = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .parts(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(1)
                .e_tag(part.e_tag().expect("part etag"))
                .build(),
        )
        .build();
    let mut etags = Vec::new();
    for _ in 0..2 {
        let out = c
            .complete_multipart_upload()
            .bucket("other")
            .key("m")
            .upload_id(&id)
            .multipart_upload(done.clone())
            .send()
            .await
            .expect("complete");
        etags.push(out.e_tag().expect("etag").to_owned());
    }
    assert!(
        etags[0].ends_with("-1\"") && etags[0] == etags[1],
        "{etags:?}"
    );
    server.stop();
    dirs.assert_nothing_written_outside_data();
}

/// After uploads in every mode: no plaintext, SSE-C key or metadata value in any file of the
/// data directory; after a restart every object reads back with its key; a flipped bit in a
/// stored blob makes GET fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_at_rest_scan_restart_and_tamper() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    create_bucket(&c, "rest").await;
    create_bucket(&c, "rest-kms").await;

    let mut stored = Vec::new();
    let mut keys = Vec::new();
    for sse in [Sse::Default, Sse::S3, Sse::kms(), Sse::c()] {
        if let Sse::C(k) = &sse {
            keys.push(k.clone());
        }
        stored.push(
            put(
                &c,
                "rest",
                &format!("single/{}", sse.name()),
                &random_bytes(SMALL_LEN),
                &sse,
            )
            .await,
        );
    }
    let ctx = Sse::Kms {
        key_id: Some("alias/aws/s3".into()),
        context: Some(r#"{"tenant":"t1"}"#.into()),
    };
    stored.push(put(&c, "rest", "single/kms-ctx", &random_bytes(SMALL_LEN), &ctx).await);
    let mp_c = Sse::c();
    if let Sse::C(k) = &mp_c {
        keys.push(k.clone());
    }
    stored.push(
        multipart(
            &c,
            "rest",
            "mpu/s3",
            &random_bytes(MULTIPART_LEN),
            PART,
            &Sse::S3,
        )
        .await,
    );
    stored.push(
        multipart(
            &c,
            "rest",
            "mpu/kms",
            &random_bytes(MULTIPART_LEN),
            PART + 1,
            &Sse::kms(),
        )
        .await,
    );
    stored.push(
        multipart(
            &c,
            "rest",
            "mpu/c",
            &random_bytes(MULTIPART_LEN),
            PART + 1,
            &mp_c,
        )
        .await,
    );
    let copy_c = Sse::c();
    if let Sse::C(k) = &copy_c {
        keys.push(k.clone());
    }
    let src = stored[1].clone();
    stored.push(copy(&c, &src, "rest", "copy/s3-to-c", &copy_c).await);
    let src = stored[3].clone();
    stored.push(copy(&c, &src, "rest", "copy/c-to-kms", &Sse::kms()).await);
    c.put_bucket_encryption()
        .bucket("rest-kms")
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put bucket encryption");
    let default_kms = put_in(
        &c,
        "rest-kms",
        "default",
        &random_bytes(SMALL_LEN),
        &Sse::Default,
        true,
    )
    .await;

    // Old versions and tags are at rest too: a versioned key with two versions (the first
    // tagged) and a delete marker over them.
    create_bucket(&c, "rest-ver").await;
    c.put_bucket_versioning()
        .bucket("rest-ver")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    let old_version = put(&c, "rest-ver", "doc", &random_bytes(SMALL_LEN), &Sse::S3).await;
    let (tag_key, tag_value) = (hex::encode(random_bytes(12)), hex::encode(random_bytes(16)));
    c.put_object_tagging()
        .bucket("rest-ver")
        .key("doc")
        .tagging(
            Tagging::builder()
                .tag_set(
                    Tag::builder()
                        .key(&tag_key)
                        .value(&tag_value)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("tag the first version");
    let new_version = put(&c, "rest-ver", "doc", &random_bytes(SMALL_LEN), &Sse::kms()).await;
    let versions = c
        .list_object_versions()
        .bucket("rest-ver")
        .send()
        .await
        .expect("list versions");
    assert_eq!(versions.versions().len(), 2, "both versions kept");
    c.delete_object()
        .bucket("rest-ver")
        .key("doc")
        .send()
        .await
        .expect("delete marker");

    for o in &stored {
        check_get(&c, o, false).await;
    }
    check_get(&c, &default_kms, true).await;
    server.stop();

    // --- scan ---
    let mut needles = Needles::default();
    for o in stored.iter().chain([&default_kms]) {
        needles.add_body(o);
    }
    for k in &keys {
        needles.add_customer_key(k);
    }
    needles.add_body(&old_version);
    needles.add_body(&new_version);
    needles.add("tag key of rest-ver/doc".into(), tag_key.as_bytes());
    needles.add("tag value of rest-ver/doc".into(), tag_value.as_bytes());
    // The scan must be able to find what it looks for: a plain copy of one body is found.
    let probe_dir = tempfile::tempdir().expect("tempdir");
    fs::write(probe_dir.path().join("probe"), &*stored[6].body).expect("probe");
    let (_, _, probe) = needles.scan(probe_dir.path());
    assert!(!probe.is_empty(), "the scanner finds a plaintext body");
    let (files, bytes, found) = needles.scan(&dirs.data());
    eprintln!(
        "scanned {files} files, {bytes} bytes under the data dir for {} needles",
        needles.items.len()
    );
    assert!(
        files > 0 && bytes > 3 * MULTIPART_LEN as u64,
        "scanned {files} files, {bytes} bytes"
    );
    assert!(
        found.is_empty(),
        "plaintext, SSE-C keys or metadata found at rest ({} hits):\n{}",
        found.len(),
        found.join("\n")
    );
    // Data keys are never visible to a client, so they cannot be searched for from here;
    // the format's wrapped-key tests cover that a DEK is stored only wrapped.

    // --- restart ---
    let server = Server::start(&dirs);
    let c = server.client();
    for o in &stored {
        check_get(&c, o, false).await;
        check_head(&c, o, false).await;
    }
    check_get(&c, &default_kms, true).await;
    check_range(&c, &stored[7], &format!("bytes={}-{}", PART - 3, PART + 3)).await;
    assert_s3_error(
        "after restart: SSE-C object with the wrong key",
        with_sse_read!(c.get_object().bucket("rest").key("single/sse-c"), &Sse::c())
            .send()
            .await,
        403,
        Some("AccessDenied"),
    );

    // --- tamper: one bit flipped in the middle of a stored blob, one object per mode, plus
    // the last part of a multipart object (damage found after the status line was sent) ---
    let blobs = dirs.data().join("blobs");
    let cases = [
        (Sse::S3, MIB + 123, None),
        (Sse::kms(), MIB + 123, None),
        (Sse::c(), MIB + 123, None),
        (Sse::S3, 2 * PART + 2 * MIB + 5, Some(PART)),
        (Sse::c(), 2 * PART + 2 * MIB + 5, Some(PART)),
    ];
    for (sse, len, part) in cases {
        let before = snapshot(&blobs);
        let key = format!("tamper/{}-{len}", sse.name());
        let o = match part {
            None => put(&c, "rest", &key, &random_bytes(len), &sse).await,
            Some(p) => multipart(&c, "rest", &key, &random_bytes(len), p, &sse).await,
        };
        let after = snapshot(&blobs);
        let mut new_blobs: Vec<(PathBuf, u64)> = after
            .iter()
            .filter(|(p, v)| before.get(*p) != Some(v))
            .map(|(p, v)| (p.clone(), v.0))
            .collect();
        // Single PUT: the one blob of about `len` bytes. Multipart: the last part's blob
        // (the only one of about 2 MiB), so the damage is far from the start of the object.
        let want = len - part.map_or(0, |p| 2 * p);
        new_blobs.retain(|(_, l)| *l >= want as u64 && *l < (want + want / 4) as u64);
        assert_eq!(
            new_blobs.len(),
            1,
            "expected one new blob of about {want} bytes under {} for {key}",
            blobs.display()
        );
        let (path, blob_len) = &new_blobs[0];
        flip_bit(path, blob_len / 2);
        // Plaintext offset of the damaged chunk, roughly: the middle of the damaged blob.
        let damaged = part.map_or(0, |p| 2 * p) + want / 2;

        let full = get_tampered(&c, &o, None).await;
        eprintln!("tampered {key}: full GET → {full}");
        assert!(full.failed(), "GET {key} after a bit flip: {full}");
        for (range, must_fail) in [
            (format!("bytes={}-{}", damaged - 100, damaged + 100), true),
            ("bytes=0-99".to_string(), false),
            ("bytes=-100".to_string(), false),
        ] {
            let r = get_tampered(&c, &o, Some(&range)).await;
            eprintln!("tampered {key}: GET {range} → {r}");
            if must_fail {
                assert!(r.failed(), "ranged GET {range} of tampered {key}: {r}");
            }
        }
    }
    server.stop();
    dirs.assert_nothing_written_outside_data();
}

/// A second server started on a data directory in use stops before it touches anything:
/// a blob a running writer has completed but not yet committed (here: an unreferenced blob
/// file) survives it, and the running server keeps serving. Once the directory is free, a
/// restart collects that blob as garbage (its writer is gone) and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_deletes_nothing() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    let c = server.client();
    create_bucket(&c, "busy").await;
    let name = "0123456789abcdef0123456789abcdef";
    let in_flight = dirs.data().join("blobs").join(&name[..2]).join(name);
    fs::create_dir_all(in_flight.parent().unwrap()).unwrap();
    fs::write(&in_flight, b"a blob whose record is not committed yet").unwrap();

    let second = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("server")
        .arg("--data-dir")
        .arg(dirs.data())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("COFFER_DATA_DIR")
        .current_dir(dirs.root.path().join("cwd"))
        .stdin(Stdio::null())
        .output()
        .expect("run a second server");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second server must not start");
    assert!(
        stderr.contains("audit"),
        "it names the lock it could not take: {stderr}"
    );
    assert!(
        in_flight.exists(),
        "the second server deleted an in-flight blob"
    );
    let listed = c
        .list_buckets()
        .send()
        .await
        .expect("the first server still serves");
    assert_eq!(listed.buckets().len(), 1);
    server.stop();

    let server = Server::start(&dirs);
    assert!(
        !in_flight.exists(),
        "the orphan is collected once its writer is gone"
    );
    assert!(
        server
            .process
            .lines()
            .iter()
            .any(|l| l.contains("removed 0 interrupted write(s) and 1 uncommitted blob(s)")),
        "the restart reports what it collected: {:?}",
        server.process.lines()
    );
    server.stop();
}
