//! `s3bench`: the load client behind `bench/server.sh`.
//!
//! The same code drives a plain-HTTP server (nginx's DAV module: unsigned PUT/GET/DELETE) and
//! an S3 server over HTTPS (Coffer): one keep-alive HTTP/1.1 connection per client thread
//! (hyper; rustls with aws-lc trusting only the server's CA), SigV4 header signatures with
//! `x-amz-content-sha256: UNSIGNED-PAYLOAD` (aws-sigv4) so the client never hashes a body, and
//! request bodies sent as slices of one shared random buffer (no copy, no generation in the
//! timed loops).
//!
//! It cannot silently measure errors: every response must be 2xx (anything else aborts the
//! run), every GET body must have exactly the expected length (checked inside the timed
//! loops), every S3 PUT response must name the requested encryption, and the content of one
//! object per workload is compared byte for byte outside the timed loops.
//!
//! Output: a human summary on stderr and one JSON line per run (`--json FILE`, appended).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

const MIB: u64 = 1 << 20;
/// The shared random buffer every body is cut from (object contents wrap around it). Not a
/// power of two, so objects of the same size but different seeds differ.
const DATA_LEN: u64 = 256 * MIB + 12_347;
/// Largest body frame handed to hyper.
const FRAME: u64 = 4 * MIB;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Sse {
    /// No encryption header (nginx; Coffer applies the bucket default, SSE-S3).
    None,
    /// `x-amz-server-side-encryption: AES256`.
    S3,
    /// `x-amz-server-side-encryption: aws:kms` (the default key).
    Kms,
    /// SSE-C: customer key headers on every PUT, GET and part.
    C,
}

/// Throughput, latency and memory figures for one server and encryption mode.
#[derive(Parser)]
#[command(name = "s3bench", version)]
struct Args {
    /// `http://HOST:PORT` (plain, unsigned requests, e.g. nginx DAV) or `https://HOST:PORT`.
    #[arg(long)]
    endpoint: String,
    /// PEM CA bundle to trust for https (Coffer prints it as `ca-bundle:`).
    #[arg(long)]
    ca_bundle: Option<PathBuf>,
    /// Sign requests with SigV4 (UNSIGNED-PAYLOAD) using this access key (and --secret-key).
    #[arg(long, env = "S3BENCH_ACCESS_KEY", requires = "secret_key")]
    access_key: Option<String>,
    #[arg(long, env = "S3BENCH_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Server-side encryption requested on each object.
    #[arg(long, value_enum, default_value = "none")]
    sse: Sse,
    /// Bucket (first path segment); created with PUT when signing.
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Name of this run in the output.
    #[arg(long)]
    label: String,
    /// Phases to run, in the order given: rss, small, large, range.
    #[arg(long, value_delimiter = ',', default_value = "rss,small,large,range")]
    phases: Vec<String>,
    #[arg(long, default_value_t = 100)]
    small_count: u64,
    #[arg(long, default_value_t = 1)]
    small_mib: u64,
    #[arg(long, default_value_t = 4)]
    small_threads: usize,
    #[arg(long, default_value_t = 5)]
    small_rounds: usize,
    #[arg(long, default_value_t = 5)]
    large_count: u64,
    #[arg(long, default_value_t = 256)]
    large_mib: u64,
    #[arg(long, default_value_t = 3)]
    large_rounds: usize,
    /// Size of the object the range GETs read from.
    #[arg(long, default_value_t = 1024)]
    range_object_mib: u64,
    /// Timed requests of each kind (1 MiB object GET, 1 MiB range GET), interleaved.
    #[arg(long, default_value_t = 300)]
    range_reps: usize,
    /// Server process whose memory the rss phase watches (VmHWM after resetting it, and
    /// VmRSS sampled every 10 ms). Without it the rss phase is skipped.
    #[arg(long)]
    rss_pid: Option<u32>,
    /// Size of the rss phase's object, written by multipart upload and read back whole.
    #[arg(long, default_value_t = 5120)]
    rss_mib: u64,
    #[arg(long, default_value_t = 64)]
    rss_part_mib: u64,
    /// Server processes whose CPU time (user + system) is reported per GiB moved.
    #[arg(long, value_delimiter = ',')]
    cpu_pids: Vec<u32>,
    /// Append the results as one JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Where and how to talk.
struct Target {
    addr: SocketAddr,
    /// `host:port`, the Host header.
    authority: String,
    /// `scheme://host:port`, for signing.
    base: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    identity: Option<Identity>,
    sse: Sse,
    /// SSE-C headers (algorithm, key, key MD5).
    customer: Vec<(&'static str, String)>,
    bucket: String,
}

impl Target {
    fn new(args: &Args) -> Result<Target> {
        let (https, rest) = if let Some(r) = args.endpoint.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = args.endpoint.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("--endpoint must start with http:// or https://");
        };
        let authority = rest.trim_end_matches('/').to_owned();
        let addr = authority
            .to_socket_addrs()
            .with_context(|| format!("resolve {authority}"))?
            .next()
            .ok_or_else(|| anyhow!("{authority} resolves to nothing"))?;
        let tls = if https {
            let ca = args
                .ca_bundle
                .as_ref()
                .ok_or_else(|| anyhow!("https needs --ca-bundle"))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("read {}", ca.display()))?
            {
                roots.add(cert.with_context(|| format!("parse {}", ca.display()))?)?;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let host = authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let name = ServerName::try_from(host).context("TLS server name")?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let identity = match (&args.access_key, &args.secret_key) {
            (Some(a), Some(s)) => {
                Some(Credentials::new(a.clone(), s.clone(), None, None, "s3bench").into())
            }
            _ => None,
        };
        let customer = if args.sse == Sse::C {
            // A fixed, obviously synthetic customer key.
            let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5c).collect();
            vec![
                (
                    "x-amz-server-side-encryption-customer-algorithm",
                    "AES256".to_owned(),
                ),
                (
                    "x-amz-server-side-encryption-customer-key",
                    base64::engine::general_purpose::STANDARD.encode(&key),
                ),
                (
                    "x-amz-server-side-encryption-customer-key-MD5",
                    base64::engine::general_purpose::STANDARD.encode(Md5::digest(&key)),
                ),
            ]
        } else {
            Vec::new()
        };
        Ok(Target {
            addr,
            base: format!("{}://{authority}", if https { "https" } else { "http" }),
            authority,
            tls,
            identity,
            sse: args.sse,
            customer,
            bucket: args.bucket.clone(),
        })
    }

    fn s3(&self) -> bool {
        self.identity.is_some()
    }

    /// Encryption headers for a request that creates an object (PUT, CreateMultipartUpload).
    fn create_headers(&self) -> Vec<(&'static str, String)> {
        match self.sse {
            Sse::None => Vec::new(),
            Sse::S3 => vec![("x-amz-server-side-encryption", "AES256".to_owned())],
            Sse::Kms => vec![("x-amz-server-side-encryption", "aws:kms".to_owned())],
            Sse::C => self.customer.clone(),
        }
    }

    /// Encryption headers for reading, UploadPart and CompleteMultipartUpload (SSE-C only).
    fn key_headers(&self) -> Vec<(&'static str, String)> {
        self.customer.clone()
    }

    /// Checks that a PUT (or part) response names the encryption that was asked for.
    fn check_sse(&self, headers: &HeaderMap, what: &str) -> Result<()> {
        if !self.s3() {
            return Ok(());
        }
        let (name, want) = match self.sse {
            Sse::None | Sse::S3 => ("x-amz-server-side-encryption", "AES256"),
            Sse::Kms => ("x-amz-server-side-encryption", "aws:kms"),
            Sse::C => ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        };
        let got = headers.get(name).and_then(|v| v.to_str().ok());
        ensure!(
            got == Some(want),
            "{what}: response header {name} is {got:?}, expected {want}"
        );
        Ok(())
    }

    fn path(&self, key: &str) -> String {
        format!("/{}/{key}", self.bucket)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &str,
        extra: &[(&'static str, String)],
        body: SliceBody,
    ) -> Result<Request<SliceBody>> {
        let pq = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        let mut b = Request::builder()
            .method(method.clone())
            .uri(&pq)
            .header("host", &self.authority);
        if body.remaining > 0 || method == Method::PUT || method == Method::POST {
            b = b.header("content-length", body.remaining);
        }
        for (k, v) in extra {
            b = b.header(*k, v);
        }
        let mut req = b.body(body)?;
        if let Some(identity) = &self.identity {
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| Ok((k.as_str().to_owned(), v.to_str()?.to_owned())))
                .collect::<Result<Vec<_>>>()?;
            let mut settings = SigningSettings::default();
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            let params = v4::SigningParams::builder()
                .identity(identity)
                .region("us-east-1")
                .name("s3")
                .time(SystemTime::now())
                .settings(settings)
                .build()?
                .into();
            let url = format!("{}{pq}", self.base);
            let signable = SignableRequest::new(
                method.as_str(),
                &url,
                headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                SignableBody::UnsignedPayload,
            )?;
            let (instructions, _) = sign(signable, &params)?.into_parts();
            instructions.apply_to_request_http1x(&mut req);
        }
        Ok(req)
    }
}

/// A request body made of shared slices (sent without copying on our side).
struct SliceBody {
    frames: VecDeque<Bytes>,
    remaining: u64,
}

impl SliceBody {
    fn empty() -> SliceBody {
        SliceBody {
            frames: VecDeque::new(),
            remaining: 0,
        }
    }

    fn from_bytes(b: Bytes) -> SliceBody {
        SliceBody {
            remaining: b.len() as u64,
            frames: VecDeque::from([b]),
        }
    }
}

impl Body for SliceBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.frames.pop_front().map(|b| {
            this.remaining -= b.len() as u64;
            Ok(Frame::data(b))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Object contents: object `seed` of length n is bytes seed..seed+n of the buffer repeated.
struct Data {
    buf: Bytes,
}

impl Data {
    fn new() -> Data {
        let mut v = vec![0u8; DATA_LEN as usize];
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        for c in v.chunks_exact_mut(8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            c.copy_from_slice(&s.to_le_bytes());
        }
        Data { buf: v.into() }
    }

    fn body(&self, seed: u64, len: u64) -> SliceBody {
        let mut frames = VecDeque::new();
        let mut pos = seed % DATA_LEN;
        let mut left = len;
        while left > 0 {
            let n = left.min(FRAME).min(DATA_LEN - pos);
            frames.push_back(self.buf.slice(pos as usize..(pos + n) as usize));
            pos = (pos + n) % DATA_LEN;
            left -= n;
        }
        SliceBody {
            frames,
            remaining: len,
        }
    }

    /// Whether `chunk` equals the content at absolute position `pos` (seed + offset).
    fn matches(&self, pos: u64, mut chunk: &[u8]) -> bool {
        let mut pos = pos % DATA_LEN;
        while !chunk.is_empty() {
            let n = (chunk.len() as u64).min(DATA_LEN - pos) as usize;
            if chunk[..n] != self.buf[pos as usize..pos as usize + n] {
                return false;
            }
            chunk = &chunk[n..];
            pos = (pos + n as u64) % DATA_LEN;
        }
        true
    }
}

/// One keep-alive connection (reopened only if the server closed it; counted).
struct Conn {
    target: Arc<Target>,
    tx: Option<SendRequest<SliceBody>>,
    connects: u64,
}

async fn handshake<I>(io: I) -> Result<SendRequest<SliceBody>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

impl Conn {
    fn new(target: Arc<Target>) -> Conn {
        Conn {
            target,
            tx: None,
            connects: 0,
        }
    }

    async fn connect(&mut self) -> Result<()> {
        let tcp = TcpStream::connect(self.target.addr)
            .await
            .with_context(|| format!("connect {}", self.target.addr))?;
        tcp.set_nodelay(true)?;
        let tx = match &self.target.tls {
            Some((tls, name)) => handshake(tls.connect(name.clone(), tcp).await?).await?,
            None => handshake(tcp).await?,
        };
        self.tx = Some(tx);
        self.connects += 1;
        Ok(())
    }

    async fn send(&mut self, req: Request<SliceBody>) -> Result<Response<Incoming>> {
        if self.tx.as_ref().is_none_or(|t| t.is_closed()) {
            self.connect().await?;
        }
        let tx = self.tx.as_mut().ok_or_else(|| anyhow!("no connection"))?;
        tx.ready().await?;
        Ok(tx.send_request(req).await?)
    }

    /// Sends and requires a 2xx; returns the headers and the (small) body.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        query: &str,
        headers: &[(&'static str, String)],
        body: SliceBody,
        what: &str,
    ) -> Result<(HeaderMap, Bytes)> {
        let req = self.target.request(method, path, query, headers, body)?;
        let resp = self.send(req).await.with_context(|| what.to_owned())?;
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{what}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(600)])
            );
        }
        Ok((parts.headers, body))
    }

    async fn create_bucket(&mut self) -> Result<()> {
        let path = format!("/{}", self.target.bucket);
        let req = self
            .target
            .request(Method::PUT, &path, "", &[], SliceBody::empty())?;
        let resp = self.send(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        ensure!(
            status.is_success() || text.contains("BucketAlreadyOwnedByYou"),
            "create bucket: HTTP {status}: {text}"
        );
        Ok(())
    }

    async fn put(&mut self, data: &Data, key: &str, seed: u64, len: u64) -> Result<()> {
        let path = self.target.path(key);
        let headers = self.target.create_headers();
        let what = format!("PUT {path}");
        let (h, _) = self
            .call(
                Method::PUT,
                &path,
                "",
                &headers,
                data.body(seed, len),
                &what,
            )
            .await?;
        self.target.check_sse(&h, &what)
    }

    /// GET (whole object, or `range` = start..end). Checks status and exact length; with
    /// `verify`, also every byte (object seed).
    async fn get(
        &mut self,
        key: &str,
        len: u64,
        range: Option<(u64, u64)>,
        verify: Option<(&Data, u64)>,
    ) -> Result<HeaderMap> {
        let path = self.target.path(key);
        let mut headers = self.target.key_headers();
        let (start, want) = match range {
            Some((a, b)) => {
                headers.push(("range", format!("bytes={a}-{}", b - 1)));
                (a, b - a)
            }
            None => (0, len),
        };
        let req = self
            .target
            .request(Method::GET, &path, "", &headers, SliceBody::empty())?;
        let resp = self
            .send(req)
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let (parts, mut body) = resp.into_parts();
        if !status.is_success() {
            let b = body.collect().await?.to_bytes();
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&b[..b.len().min(600)])
            );
        }
        ensure!(
            status.as_u16() == if range.is_some() { 206 } else { 200 },
            "GET {path}: HTTP {status}"
        );
        let mut got = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame?.into_data() {
                if let Some((data, seed)) = verify {
                    ensure!(
                        data.matches(seed + start + got, &d),
                        "GET {path}: content differs at offset {}",
                        start + got
                    );
                }
                got += d.len() as u64;
            }
        }
        ensure!(
            got == want,
            "GET {path}: {got} bytes, expected {want} (range {range:?})"
        );
        Ok(parts.headers)
    }

    async fn delete(&mut self, key: &str) -> Result<()> {
        let path = self.target.path(key);
        let what = format!("DELETE {path}");
        self.call(Method::DELETE, &path, "", &[], SliceBody::empty(), &what)
            .await
            .map(drop)
    }

    /// Multipart upload (S3) of `len` bytes in parts of `part` bytes.
    async fn multipart_put(
        &mut self,
        data: &Data,
        key: &str,
        seed: u64,
        len: u64,
        part: u64,
    ) -> Result<()> {
        let path = self.target.path(key);
        let create = self.target.create_headers();
        let (h, body) = self
            .call(
                Method::POST,
                &path,
                "uploads=",
                &create,
                SliceBody::empty(),
                "CreateMultipartUpload",
            )
            .await?;
        self.target.check_sse(&h, "CreateMultipartUpload")?;
        let xml = String::from_utf8_lossy(&body).into_owned();
        let id = xml
            .split_once("<UploadId>")
            .and_then(|(_, r)| r.split_once("</UploadId>"))
            .map(|(id, _)| id.to_owned())
            .ok_or_else(|| anyhow!("CreateMultipartUpload: no UploadId in {xml}"))?;
        ensure!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)),
            "upload id {id:?} would need percent-encoding"
        );
        let keyh = self.target.key_headers();
        let mut complete = String::from("<CompleteMultipartUpload>");
        let mut off = 0;
        let mut n = 0;
        while off < len {
            n += 1;
            let size = part.min(len - off);
            let what = format!("UploadPart {n}");
            let (h, _) = self
                .call(
                    Method::PUT,
                    &path,
                    &format!("partNumber={n}&uploadId={id}"),
                    &keyh,
                    data.body(seed + off, size),
                    &what,
                )
                .await?;
            self.target.check_sse(&h, &what)?;
            let etag = h
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("{what}: no ETag"))?;
            complete.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            ));
            off += size;
        }
        complete.push_str("</CompleteMultipartUpload>");
        let (_, body) = self
            .call(
                Method::POST,
                &path,
                &format!("uploadId={id}"),
                &keyh,
                SliceBody::from_bytes(Bytes::from(complete)),
                "CompleteMultipartUpload",
            )
            .await?;
        let text = String::from_utf8_lossy(&body);
        ensure!(!text.contains("<Error>"), "CompleteMultipartUpload: {text}");
        Ok(())
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

#[derive(Clone)]
enum Op {
    Put { key: String, seed: u64, len: u64 },
    Get { key: String, len: u64 },
}

/// Runs `ops` on `threads` threads (op i on thread i mod threads), each thread on its own
/// connection opened before the clock starts. Returns the wall time from the common start
/// to the last completion.
fn run_parallel(
    target: &Arc<Target>,
    data: &Arc<Data>,
    threads: usize,
    ops: &[Op],
    connects: &AtomicU64,
) -> Result<Duration> {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let failed = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..threads {
        let mine: Vec<Op> = ops.iter().skip(t).step_by(threads).cloned().collect();
        let (target, data, barrier, failed) = (
            Arc::clone(target),
            Arc::clone(data),
            Arc::clone(&barrier),
            Arc::clone(&failed),
        );
        handles.push(std::thread::spawn(move || -> Result<(Instant, u64)> {
            let prep = (|| -> Result<_> {
                let rt = runtime()?;
                let mut conn = Conn::new(target);
                rt.block_on(conn.connect())?;
                Ok((rt, conn))
            })();
            barrier.wait();
            let (rt, mut conn) = prep?;
            let r = rt.block_on(async {
                for op in &mine {
                    if failed.load(Ordering::Relaxed) {
                        bail!("another thread failed");
                    }
                    match op {
                        Op::Put { key, seed, len } => conn.put(&data, key, *seed, *len).await?,
                        Op::Get { key, len } => {
                            conn.get(key, *len, None, None).await?;
                        }
                    }
                }
                Ok(Instant::now())
            });
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            Ok((r?, conn.connects))
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut end = start;
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok((e, c))) => {
                end = end.max(e);
                connects.fetch_add(c, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(anyhow!("a client thread panicked"));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(end - start),
    }
}

/// User + system CPU ticks (1/100 s) of these processes, all threads included.
fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    let mut sum = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state is field 3, utime 14, stime 15.
        for i in [11, 12] {
            sum += f
                .get(i)
                .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
                .parse::<u64>()?;
        }
    }
    Ok(sum)
}

fn self_ticks() -> Result<u64> {
    cpu_ticks(&[std::process::id()])
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// Resets the process's peak RSS (VmHWM) to its current RSS; false if the kernel refused.
fn reset_hwm(pid: u32) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/clear_refs"))
        .and_then(|mut f| f.write_all(b"5"))
        .is_ok()
}

/// Samples VmRSS every 10 ms until dropped; returns the maximum seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut max = 0;
            while !s.load(Ordering::Relaxed) {
                if let Ok(v) = status_kib(pid, "VmRSS") {
                    max = max.max(v);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            max
        });
        RssSampler { stop, handle }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn latency_summary(v: &[f64]) -> Value {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    json!({
        "p10_us": percentile(&s, 0.10),
        "p50_us": percentile(&s, 0.50),
        "p90_us": percentile(&s, 0.90),
        "mean_us": s.iter().sum::<f64>() / s.len().max(1) as f64,
    })
}

struct Bench {
    args: Args,
    target: Arc<Target>,
    data: Arc<Data>,
    connects: AtomicU64,
}

impl Bench {
    fn server_ticks(&self) -> Result<u64> {
        cpu_ticks(&self.args.cpu_pids)
    }

    /// One verified round trip outside the timed loops: every byte of `key` compared, and
    /// (S3) the GET response names the requested encryption.
    fn verify(&self, rt: &tokio::runtime::Runtime, key: &str, seed: u64, len: u64) -> Result<()> {
        let mut conn = Conn::new(Arc::clone(&self.target));
        let h = rt.block_on(conn.get(key, len, None, Some((&self.data, seed))))?;
        self.target.check_sse(&h, &format!("GET {key}"))?;
        Ok(())
    }

    /// PUT and GET `count` objects of `mib` MiB on `threads` threads, `rounds` times.
    fn throughput(
        &self,
        name: &str,
        count: u64,
        mib: u64,
        threads: usize,
        rounds: usize,
    ) -> Result<Value> {
        let len = mib * MIB;
        let keys: Vec<(String, u64)> = (0..count)
            .map(|i| (format!("{name}/{i:05}"), i * 1_000_003 + mib))
            .collect();
        let puts: Vec<Op> = keys
            .iter()
            .map(|(k, s)| Op::Put {
                key: k.clone(),
                seed: *s,
                len,
            })
            .collect();
        let gets: Vec<Op> = keys
            .iter()
            .map(|(k, _)| Op::Get {
                key: k.clone(),
                len,
            })
            .collect();
        let total = count * len;
        let (mut put_rates, mut get_rates) = (Vec::new(), Vec::new());
        let (mut put_srv, mut get_srv, mut put_cli, mut get_cli) = (0, 0, 0, 0);
        let rt = runtime()?;
        for round in 0..rounds {
            let (s0, c0) = (self.server_ticks()?, self_ticks()?);
            let d = run_parallel(&self.target, &self.data, threads, &puts, &self.connects)?;
            let (s1, c1) = (self.server_ticks()?, self_ticks()?);
            put_srv += s1 - s0;
            put_cli += c1 - c0;
            put_rates.push(mbps(total, d));
            if round == 0 {
                for i in [0, keys.len() - 1] {
                    self.verify(&rt, &keys[i].0, keys[i].1, len)?;
                }
            }
            let (s0, c0) = (self.server_ticks()?, self_ticks()?);
            let d = run_parallel(&self.target, &self.data, threads, &gets, &self.connects)?;
            let (s1, c1) = (self.server_ticks()?, self_ticks()?);
            get_srv += s1 - s0;
            get_cli += c1 - c0;
            get_rates.push(mbps(total, d));
            eprintln!(
                "  {name} round {}: PUT {:.0} MB/s, GET {:.0} MB/s (load {})",
                round + 1,
                put_rates[round],
                get_rates[round],
                loadavg()
            );
        }
        let mut conn = Conn::new(Arc::clone(&self.target));
        rt.block_on(async {
            for (k, _) in &keys {
                conn.delete(k).await?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        let gib = (total * rounds as u64) as f64 / (1u64 << 30) as f64;
        let per_gib = |ticks: u64| ticks as f64 / 100.0 / gib;
        Ok(json!({
            "objects": count, "mib": mib, "threads": threads, "rounds": rounds,
            "put_mbps": put_rates, "get_mbps": get_rates,
            "put_mbps_median": median(&put_rates), "get_mbps_median": median(&get_rates),
            "put_server_cpu_s_per_gib": per_gib(put_srv),
            "get_server_cpu_s_per_gib": per_gib(get_srv),
            "put_client_cpu_s_per_gib": per_gib(put_cli),
            "get_client_cpu_s_per_gib": per_gib(get_cli),
        }))
    }

    /// Latency of a 1 MiB range GET from a large object against a whole 1 MiB object GET.
    fn range(&self) -> Result<Value> {
        let big_len = self.args.range_object_mib * MIB;
        let (big, big_seed) = ("range/big", 77_777u64);
        let (one, one_seed) = ("range/one", 4_242u64);
        let rt = runtime()?;
        let mut conn = Conn::new(Arc::clone(&self.target));
        let reps = self.args.range_reps;
        let (full, ranged) = rt.block_on(async {
            conn.put(&self.data, big, big_seed, big_len).await?;
            conn.put(&self.data, one, one_seed, MIB).await?;
            // Content checks, untimed: the whole small object and a few ranges.
            conn.get(one, MIB, None, Some((&self.data, one_seed)))
                .await?;
            let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % (big_len - MIB + 1)
            };
            for a in [0, big_len - MIB, next(), next()] {
                conn.get(
                    big,
                    big_len,
                    Some((a, a + MIB)),
                    Some((&self.data, big_seed)),
                )
                .await?;
            }
            for _ in 0..10 {
                conn.get(one, MIB, None, None).await?;
                let a = next();
                conn.get(big, big_len, Some((a, a + MIB)), None).await?;
            }
            let (mut full, mut ranged) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                let t = Instant::now();
                conn.get(one, MIB, None, None).await?;
                full.push(t.elapsed().as_secs_f64() * 1e6);
                let a = next();
                let t = Instant::now();
                conn.get(big, big_len, Some((a, a + MIB)), None).await?;
                ranged.push(t.elapsed().as_secs_f64() * 1e6);
            }
            conn.delete(big).await?;
            conn.delete(one).await?;
            Ok::<_, anyhow::Error>((full, ranged))
        })?;
        self.connects.fetch_add(conn.connects, Ordering::Relaxed);
        let ratio = median(&ranged) / median(&full);
        eprintln!(
            "  range: 1 MiB GET p50 {:.0} µs, 1 MiB range of {} MiB p50 {:.0} µs, ratio {ratio:.2}",
            median(&full),
            self.args.range_object_mib,
            median(&ranged)
        );
        Ok(json!({
            "object_mib": self.args.range_object_mib, "reps": reps,
            "full_1mib": latency_summary(&full),
            "range_1mib": latency_summary(&ranged),
            "ratio_p50": ratio,
            "full_1mib_all_us": full,
            "range_1mib_all_us": ranged,
        }))
    }

    /// Server memory while one large object is written by multipart upload and read back.
    fn rss(&self, pid: u32) -> Result<Value> {
        ensure!(self.target.s3(), "the rss phase needs an S3 endpoint");
        let len = self.args.rss_mib * MIB;
        let part = self.args.rss_part_mib * MIB;
        let (key, seed) = ("rss/object", 31_337u64);
        let rt = runtime()?;
        let mut conn = Conn::new(Arc::clone(&self.target));
        rt.block_on(conn.connect())?;
        let baseline = status_kib(pid, "VmRSS")?;
        let reset_put = reset_hwm(pid);
        let sampler = RssSampler::start(pid);
        let t = Instant::now();
        rt.block_on(conn.multipart_put(&self.data, key, seed, len, part))?;
        let put_time = t.elapsed();
        let put_sampled = sampler.finish();
        let put_hwm = status_kib(pid, "VmHWM")?;
        let reset_get = reset_hwm(pid);
        let sampler = RssSampler::start(pid);
        let t = Instant::now();
        rt.block_on(conn.get(key, len, None, None))?;
        let get_time = t.elapsed();
        let get_sampled = sampler.finish();
        let get_hwm = status_kib(pid, "VmHWM")?;
        // The parts' seams and the ends, compared byte for byte (untimed).
        rt.block_on(async {
            for a in [0, part - MIB / 2, len - MIB] {
                conn.get(key, len, Some((a, a + MIB)), Some((&self.data, seed)))
                    .await?;
            }
            conn.delete(key).await
        })?;
        self.connects.fetch_add(conn.connects, Ordering::Relaxed);
        eprintln!(
            "  rss: {} MiB multipart ({} MiB parts) PUT {:.0} MB/s peak {} MiB; GET {:.0} MB/s peak {} MiB (baseline {} MiB)",
            self.args.rss_mib,
            self.args.rss_part_mib,
            mbps(len, put_time),
            put_hwm.max(put_sampled) >> 10,
            mbps(len, get_time),
            get_hwm.max(get_sampled) >> 10,
            baseline >> 10
        );
        Ok(json!({
            "object_mib": self.args.rss_mib, "part_mib": self.args.rss_part_mib,
            "baseline_kib": baseline,
            "put_hwm_kib": put_hwm, "put_sampled_max_kib": put_sampled, "put_hwm_reset": reset_put,
            "get_hwm_kib": get_hwm, "get_sampled_max_kib": get_sampled, "get_hwm_reset": reset_get,
            "put_mbps": mbps(len, put_time), "get_mbps": mbps(len, get_time),
        }))
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let target = Arc::new(Target::new(&args)?);
    let t0 = Instant::now();
    let data = Arc::new(Data::new());
    eprintln!(
        "{}: {} ({:?}), data buffer ready in {:.2} s, load {}",
        args.label,
        args.endpoint,
        args.sse,
        t0.elapsed().as_secs_f64(),
        loadavg()
    );
    let bench = Bench {
        target,
        data,
        connects: AtomicU64::new(0),
        args,
    };
    if bench.target.s3() {
        let rt = runtime()?;
        let mut conn = Conn::new(Arc::clone(&bench.target));
        rt.block_on(conn.create_bucket())?;
    }
    let start_rss = match bench.args.rss_pid {
        Some(pid) => Some(status_kib(pid, "VmRSS")?),
        None => None,
    };
    let load_start = loadavg();
    let mut out = json!({
        "label": bench.args.label,
        "endpoint": bench.args.endpoint,
        "sse": format!("{:?}", bench.args.sse),
        "load_start": load_start,
        "server_rss_at_start_kib": start_rss,
    });
    let a = &bench.args;
    for phase in &a.phases {
        // Peak server RSS over each phase (the rss phase measures its halves itself).
        let hwm_reset = a.rss_pid.is_some_and(reset_hwm);
        let mut v = match phase.as_str() {
            "small" => bench.throughput(
                "small",
                a.small_count,
                a.small_mib,
                a.small_threads,
                a.small_rounds,
            )?,
            "large" => bench.throughput("large", a.large_count, a.large_mib, 1, a.large_rounds)?,
            "range" => bench.range()?,
            "rss" => match a.rss_pid {
                Some(pid) => bench.rss(pid)?,
                None => continue,
            },
            p => bail!("unknown phase {p}"),
        };
        if let (Some(pid), true) = (a.rss_pid, hwm_reset) {
            v["phase_peak_rss_kib"] = json!(status_kib(pid, "VmHWM")?);
        }
        out[phase.as_str()] = v;
    }
    out["load_end"] = json!(loadavg());
    out["connections_opened"] = json!(bench.connects.load(Ordering::Relaxed));
    if let Some(path) = &a.json {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        writeln!(f, "{out}")?;
    }
    Ok(())
}
