//! `coffer audit verify` and `coffer audit query`: the readers of the audit log in
//! `<data-dir>/audit` (spec/audit-log.md §9).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every record's MAC, the hash chain across files, and the anchor.
    ///
    /// Exit status 0
    /// when intact; 1 with `first bad record: file F line L seq S: reason` when not.
    /// Needs the root key (the same --root-key-file or COFFER_ROOT_PASSPHRASE as the server).
    Verify(VerifyArgs),
    /// Print matching records as JSON lines (for a SIEM); does NOT verify the log.
    ///
    /// Prints the records that match every filter given, in log order, exactly as stored.
    /// Query does not check MACs or the chain: run `coffer audit verify` for that.
    Query(QueryArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// Data directory of the server (the log is <data-dir>/audit).
    #[arg(long, env = "COFFER_DATA_DIR", default_value = "./coffer-data")]
    data_dir: PathBuf,
    /// The root sealing key file (default: <data-dir>/root.key), as given to the server.
    #[arg(long, env = "COFFER_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
}

#[derive(Args)]
struct QueryArgs {
    /// Data directory of the server (the log is <data-dir>/audit).
    #[arg(long, env = "COFFER_DATA_DIR", default_value = "./coffer-data")]
    data_dir: PathBuf,
    /// Only records about this KMS key id.
    #[arg(long)]
    key: Option<String>,
    /// Only records of this identity (ARN).
    #[arg(long)]
    identity: Option<String>,
    /// Only this action; `*` matches anything (`kms:*`, `s3:*Object`).
    #[arg(long)]
    action: Option<String>,
    /// Only records at or after this time (RFC 3339, e.g. 2025-01-31T00:00:00Z).
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Only records before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<OffsetDateTime>,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time (like 2025-01-31T12:00:00Z): {e}"))
}

pub fn run(args: AuditArgs) -> Result<()> {
    match args.command {
        AuditCommand::Verify(a) => verify(&a),
        AuditCommand::Query(a) => query(&a),
    }
}

fn audit_dir(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("audit");
    if !dir.is_dir() {
        bail!("no audit log at {}", dir.display());
    }
    Ok(dir)
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let dir = audit_dir(&args.data_dir)?;
    // Never initialise a KMS here: without a sealed root there is nothing to verify with.
    let sealed = args
        .data_dir
        .join("kms")
        .join(coffer_kms::kms::SEALED_ROOT_FILE);
    if !sealed.exists() {
        bail!(
            "no KMS in {} ({} missing): the audit key derives from its root key",
            args.data_dir.display(),
            sealed.display()
        );
    }
    let passphrase = std::env::var("COFFER_ROOT_PASSPHRASE").ok();
    if passphrase.is_some() && args.root_key_file.is_some() {
        bail!("use either COFFER_ROOT_PASSPHRASE or --root-key-file, not both");
    }
    let passphrase = passphrase.map(zeroize::Zeroizing::new);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the async runtime")?;
    let kms = runtime
        .block_on(coffer_server::rootkey::open_kms(
            &args.data_dir,
            args.root_key_file.as_deref(),
            passphrase.as_deref().map(String::as_str),
        ))
        .map_err(|e| anyhow::anyhow!("open the KMS to derive the audit key: {e}"))?;
    let key = kms
        .derive_subsystem_key(coffer_audit::MAC_KEY_LABEL)
        .map_err(|e| anyhow::anyhow!("derive the audit key: {e}"))?;
    drop(kms);
    let report = coffer_audit::verify(&dir, &key)
        .with_context(|| format!("read the audit log in {}", dir.display()))?;
    for note in &report.notes {
        eprintln!("coffer: note: {note}");
    }
    match &report.first_bad {
        None => {
            println!(
                "audit log intact: {} records in {} file(s), last seq {}",
                report.records, report.files, report.last_seq
            );
            Ok(())
        }
        Some(bad) => bail!(
            "first bad record: {bad} ({} records verified before it)",
            report.records
        ),
    }
}

fn query(args: &QueryArgs) -> Result<()> {
    let dir = audit_dir(&args.data_dir)?;
    let filter = coffer_audit::Filter {
        key_id: args.key.clone(),
        identity: args.identity.clone(),
        action: args.action.clone(),
        since: args.since,
        until: args.until,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    coffer_audit::query(&dir, &filter, &mut out)
        .with_context(|| format!("query the audit log in {}", dir.display()))?;
    Ok(())
}
