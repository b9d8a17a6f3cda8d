//! `coffer server`: S3-compatible object storage where every object is encrypted at rest
//! (SSE-S3, SSE-KMS, SSE-C), served over HTTPS by default.
//!
//! - [`s3`]: the S3 operations, through the `s3s` crate (routing, XML, SigV4, aws-chunked);
//! - [`sse`]: the three key models and their S3 headers;
//! - [`blob`]: encrypted blobs on `object_store` (local filesystem now);
//! - [`meta`]: bucket/object/upload metadata in a page-encrypted SQLite (SQLCipher) database;
//! - [`tls`]: generated CA + certificate, or the operator's own.
//!
//! docs/server.md describes the whole.

pub mod blob;
pub mod error;
pub mod meta;
pub mod s3;
pub mod sse;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coffer_kms::{KeyFileSealer, Kms, KmsConfig, PassphraseSealer, Sealer, SystemClock};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

pub use error::{ServerError, ServerResult};

/// The default listen address (HTTPS).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9443";

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Use this certificate chain and key instead of generating a local CA.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (no TLS). SSE-C is refused in this mode.
    pub insecure_http: bool,
    /// Where the root sealing key file lives (key-file sealer), default `<data>/root.key`.
    pub root_key_file: Option<PathBuf>,
    /// Seal the root key with this passphrase (Argon2id) instead of a key file.
    pub root_passphrase: Option<Zeroizing<String>>,
    /// Base domains for virtual-host-style requests (`bucket.<domain>`).
    pub domains: Vec<String>,
    pub limits: Limits,
}

/// Connection and request limits (docs/server.md, "Limits").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// Time allowed for a TLS handshake and for each request's header section.
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long fails with `RequestTimeout`.
    pub body_idle_timeout: Duration,
    /// Largest object (single PUT, copy or part) accepted.
    pub max_object_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            max_object_size: 5 << 30,
        }
    }
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 9443).into()),
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            root_key_file: None,
            root_passphrase: None,
            domains: vec!["localhost".to_owned()],
            limits: Limits::default(),
        }
    }
}

/// Root credentials: from the environment on first start, else generated (and printed once).
fn ensure_root_credentials(meta: &meta::MetaStore) -> ServerResult<Option<(String, String)>> {
    if !meta.credentials()?.is_empty() {
        return Ok(None);
    }
    let access = std::env::var("COFFER_ROOT_ACCESS_KEY").ok();
    let secret = std::env::var("COFFER_ROOT_SECRET_KEY").ok();
    let (access, secret, generated) = match (access, secret) {
        (Some(a), Some(s)) => {
            if a.len() < 3 || s.len() < 8 {
                return Err(ServerError::Internal(
                    "COFFER_ROOT_ACCESS_KEY must be ≥ 3 characters and COFFER_ROOT_SECRET_KEY ≥ 8"
                        .into(),
                ));
            }
            (a, s, false)
        }
        (None, None) => {
            let mut raw = [0u8; 30];
            coffer_format::secret::random_fill(&mut raw)?;
            let access = format!("CF{}", &hex::encode_upper(&raw[..9]));
            let secret = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &raw[9..],
            );
            (access, secret, true)
        }
        _ => {
            return Err(ServerError::Internal(
                "set both COFFER_ROOT_ACCESS_KEY and COFFER_ROOT_SECRET_KEY, or neither".into(),
            ))
        }
    };
    meta.put_credentials(&access, &secret, "root")?;
    Ok(generated.then_some((access, secret)))
}

/// Opens everything under the data directory. Returns the S3 implementation and what to
/// print at start.
pub fn open(config: &ServerConfig) -> ServerResult<(s3::Coffer, Vec<String>)> {
    let data = &config.data_dir;
    std::fs::create_dir_all(data)
        .map_err(|e| ServerError::Internal(format!("create {}: {e}", data.display())))?;
    // Only the server's user may enter the data directory.
    std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| ServerError::Internal(format!("chmod {}: {e}", data.display())))?;
    let mut notes = Vec::new();
    let sealer: Box<dyn Sealer> = match &config.root_passphrase {
        Some(p) => Box::new(PassphraseSealer::new(
            coffer_format::SecretBytes::new(p.as_bytes().to_vec()),
            Default::default(),
        )),
        None => Box::new(KeyFileSealer::new(
            config
                .root_key_file
                .clone()
                .unwrap_or_else(|| data.join("root.key")),
        )),
    };
    let kms = Kms::open(
        KmsConfig::new(data.join("kms")),
        sealer.as_ref(),
        Arc::new(SystemClock),
    )?;
    notes.extend(kms.warnings().iter().map(|w| format!("warning: {w}")));
    let kms = Arc::new(kms);
    let meta = meta::MetaStore::open(
        &data.join("server.db"),
        &kms.derive_subsystem_key("server/metadata-db/v1")?,
    )?;
    if let Some((a, s)) = ensure_root_credentials(&meta)? {
        notes.push("root credentials (shown once; stored encrypted):".to_owned());
        notes.push(format!("  AWS_ACCESS_KEY_ID={a}"));
        notes.push(format!("  AWS_SECRET_ACCESS_KEY={s}"));
    }
    let blob_dir = data.join("blobs");
    let blobs = blob::BlobStore::open_local(&blob_dir)?;
    let (staging, orphans) = blob::sweep_local(&blob_dir, &meta.referenced_blobs()?)?;
    if staging + orphans > 0 {
        notes.push(format!(
            "removed {staging} interrupted write(s) and {orphans} uncommitted blob(s)"
        ));
    }
    let keys = sse::Keys::new(Arc::clone(&kms))?;
    let coffer = s3::Coffer {
        meta: Arc::new(meta),
        blobs: Arc::new(blobs),
        keys: Arc::new(keys),
        secure: !config.insecure_http,
        limits: config.limits,
        reserve: s3::Reserve::new(data.join("reserve")),
    };
    Ok((coffer, notes))
}

fn build_service(
    coffer: s3::Coffer,
    config: &ServerConfig,
    port: u16,
) -> ServerResult<s3s::service::S3Service> {
    let creds = coffer.meta.credentials()?;
    let mut builder = s3s::service::S3ServiceBuilder::new(coffer);
    builder.set_auth(Credentials(
        creds
            .into_iter()
            .map(|(a, s)| (a, s3s::auth::SecretKey::from(s.as_str())))
            .collect(),
    ));
    if !config.domains.is_empty() {
        // Host headers carry the port unless it is the scheme's default: match both forms,
        // or `localhost:9443` would be taken for a bucket name.
        let domains: Vec<String> = config
            .domains
            .iter()
            .flat_map(|d| [d.clone(), format!("{d}:{port}")])
            .collect();
        let host = s3s::host::MultiDomain::new(&domains)
            .map_err(|e| ServerError::Internal(format!("--domain: {e}")))?;
        builder.set_host(host);
    }
    Ok(builder.build())
}

/// Access keys and their secrets (root only, until identities arrive).
struct Credentials(std::collections::HashMap<String, s3s::auth::SecretKey>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Credentials {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        self.0.get(access_key).cloned().ok_or_else(|| {
            s3s::S3Error::with_message(
                s3s::S3ErrorCode::InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        })
    }
}

/// S3 refuses request header sections over 8 KB (`400 RequestHeaderSectionTooLarge`).
pub const MAX_HEADER_BYTES: usize = 8192;

/// The S3 service behind a check of the request's header size.
#[derive(Clone)]
struct HeaderLimit(s3s::service::S3Service);

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for HeaderLimit {
    type Response = hyper::Response<s3s::Body>;
    type Error = s3s::HttpError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let size: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if size > MAX_HEADER_BYTES {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>RequestHeaderSectionTooLarge</Code><Message>Your request header section exceeds the maximum allowed size.</Message></Error>";
            let mut resp = hyper::Response::new(s3s::Body::from(body.to_owned()));
            *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/xml"),
            );
            return Box::pin(async move { Ok(resp) });
        }
        hyper::service::Service::call(&self.0, req)
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the server until SIGTERM or Ctrl-C, then drains connections (up to 30 s).
pub async fn run(config: ServerConfig) -> ServerResult<()> {
    let (coffer, notes) = open(&config)?;
    let tls = if config.insecure_http {
        None
    } else {
        let files = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => tls::TlsFiles {
                cert: c.clone(),
                key: k.clone(),
                ca: None,
            },
            (None, None) => {
                let mut extra = Vec::new();
                if !config.listen.ip().is_unspecified() && !config.listen.ip().is_loopback() {
                    extra.push(config.listen.ip().to_string());
                }
                tls::ensure_generated(&config.data_dir.join("tls"), &extra)?
            }
            _ => {
                return Err(ServerError::Internal(
                    "--tls-cert and --tls-key go together".into(),
                ))
            }
        };
        Some((tls::server_config(&files.cert, &files.key)?, files))
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Internal(format!("listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let service = HeaderLimit(build_service(coffer, &config, local.port())?);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if local.is_ipv6() {
        format!("[{}]", local.ip())
    } else {
        local.ip().to_string()
    };
    let endpoint = format!("{scheme}://{host}:{}", local.port());
    for n in &notes {
        println!("{n}");
    }
    println!("data-dir: {}", abs(&config.data_dir).display());
    println!("endpoint: {endpoint}");
    match &tls {
        Some((_, files)) => {
            let ca = files.ca.as_ref().map(|p| abs(p));
            if let Some(ca) = &ca {
                println!("ca-bundle: {}", ca.display());
                println!(
                    "try: aws s3 ls --endpoint-url {endpoint} --ca-bundle {}",
                    ca.display()
                );
            } else {
                println!("try: aws s3 ls --endpoint-url {endpoint}");
            }
        }
        None => {
            println!(
                "warning: --insecure-http: plain HTTP, credentials and data cross the network unencrypted; SSE-C is refused"
            );
            println!("try: aws s3 ls --endpoint-url {endpoint}");
        }
    }
    println!("ready");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let acceptor = tls.map(|(cfg, _)| tokio_rustls::TlsAcceptor::from(cfg));
    let limits = config.limits;
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut conn_builder = ConnBuilder::new(TokioExecutor::new());
    conn_builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    conn_builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn_builder = Arc::new(conn_builder);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        // At most `max_connections` at once: wait for a slot before accepting.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let builder = Arc::clone(&conn_builder);
        match &acceptor {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls =
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            _ => return,
                        };
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = fut.await;
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("connections still open after 30 s; exiting");
        }
    }
    Ok(())
}

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
