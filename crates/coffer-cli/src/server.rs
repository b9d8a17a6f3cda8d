//! `coffer server`: flags and environment → `coffer_server::ServerConfig`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use zeroize::Zeroizing;

/// Logs go to stderr; COFFER_LOG takes a tracing filter (default `warn,s3s=off`: s3s logs
/// every client error at error level).
#[derive(Args)]
pub struct ServerArgs {
    /// Data directory (objects, metadata, keys, TLS files).
    #[arg(long, env = "COFFER_DATA_DIR", default_value = "./coffer-data")]
    data_dir: PathBuf,
    /// Address and port to listen on (port 0 picks a free port).
    #[arg(long, env = "COFFER_LISTEN", default_value = coffer_server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// PEM certificate chain to serve instead of the generated one (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// INSECURE: serve plain HTTP without TLS. Credentials, data and keys cross the network
    /// in clear; SSE-C requests are refused.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure_http: bool,
    /// The root sealing key file (default: <data-dir>/root.key). Keep it off the data disk
    /// in production, or use COFFER_ROOT_PASSPHRASE.
    #[arg(long, env = "COFFER_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
    /// Base domain for virtual-host-style requests (bucket.DOMAIN); repeatable.
    #[arg(long = "domain", default_value = "localhost")]
    domains: Vec<String>,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds allowed for a TLS handshake and for each request's headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request body may send nothing before it fails with RequestTimeout.
    #[arg(long, default_value_t = 30)]
    body_idle_timeout: u64,
    /// Largest object, copy or part accepted, in bytes (S3's limit: 5 GiB).
    #[arg(long, default_value_t = 5 << 30)]
    max_object_size: u64,
    /// Seconds between lifecycle passes (bucket lifecycle rules: expiration, noncurrent
    /// versions, unfinished uploads).
    #[arg(long, default_value_t = 3600)]
    lifecycle_interval: u64,
    /// Serve /metrics (Prometheus), /health/live and /health/ready on this address (TLS as
    /// the S3 listener; no credentials: keep it on a private network). Off by default.
    #[arg(long, env = "COFFER_OPS_LISTEN")]
    ops_listen: Option<SocketAddr>,
    /// Log format on stderr: `text`, or `json` (one object per line).
    #[arg(long, env = "COFFER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// The arena limit the server runs with unless its environment sets one (see
/// [`limit_malloc_arenas`]).
pub const MALLOC_ARENA_MAX: &str = "1";

/// glibc's malloc gives threads their own arenas (up to 8 per core). The server's
/// megabyte-sized buffers are allocated on one thread and freed on another (the runtime's
/// workers, its blocking pool, rayon), and each arena keeps the freed memory it cannot hand
/// back: on a 5 GiB PUT the peak RSS was 126–139 MiB with the default, 51 MiB with one arena,
/// at the same throughput (docs/benchmarks.md, "Server memory"). glibc takes the limit only
/// from its environment at start; setting it in-process needs `mallopt` (unsafe FFI, which
/// this crate forbids; the workspace's one audited exception is coffer-kms's locked-memory
/// module). So the server re-executes itself once, before it does anything
/// else, with `MALLOC_ARENA_MAX=1` added — unless `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` is
/// already set, which is also how an operator chooses another value. If the re-execution
/// fails, the server goes on with glibc's default and says so.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next();
    let err = match std::env::current_exe() {
        Ok(exe) => {
            let mut cmd = std::process::Command::new(exe);
            if let Some(arg0) = arg0 {
                cmd.arg0(arg0);
            }
            // Only returns on failure.
            cmd.args(args)
                .env("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
                .exec()
        }
        Err(e) => e,
    };
    eprintln!(
        "coffer: warning: could not restart with MALLOC_ARENA_MAX={MALLOC_ARENA_MAX} ({err}); \
         memory use may be higher"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

pub fn run(args: ServerArgs) -> Result<()> {
    limit_malloc_arenas();
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,s3s=off"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    if let Err(e) = coffer_kms::locked::disable_core_dumps() {
        eprintln!("coffer: warning: could not disable core dumps: {e}");
    }
    let mut config = coffer_server::ServerConfig::new(args.data_dir);
    config.listen = args.listen;
    config.tls_cert = args.tls_cert;
    config.tls_key = args.tls_key;
    config.insecure_http = args.insecure_http;
    config.root_key_file = args.root_key_file;
    config.domains = args.domains;
    config.lifecycle_interval = std::time::Duration::from_secs(args.lifecycle_interval.max(1));
    config.ops_listen = args.ops_listen;
    config.limits = coffer_server::Limits {
        max_connections: args.max_connections,
        header_timeout: std::time::Duration::from_secs(args.header_timeout.max(1)),
        body_idle_timeout: std::time::Duration::from_secs(args.body_idle_timeout.max(1)),
        max_object_size: args.max_object_size,
    };
    if let Ok(p) = std::env::var("COFFER_ROOT_PASSPHRASE") {
        if config.root_key_file.is_some() {
            bail!("use either COFFER_ROOT_PASSPHRASE or --root-key-file, not both");
        }
        config.root_passphrase = Some(Zeroizing::new(p));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime
        .block_on(coffer_server::run(config))
        .map_err(|e| anyhow::anyhow!("{e}"))
}
