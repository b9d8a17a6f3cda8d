//! `coffer`: Coffer's command-line tool.
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod local;
mod pipeline;
mod profile;
mod s3cmd;
mod server;
mod signed;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Coffer: storage encrypted under keys you control.
#[derive(Parser)]
#[command(name = "coffer", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a local key-encryption key file (mode 0600).
    Keygen(local::KeygenArgs),
    /// Encrypt a file (or stdin) with a local key file, in Coffer's object format.
    Encrypt(local::CryptArgs),
    /// Decrypt a file (or stdin) made by `coffer encrypt`.
    Decrypt(local::CryptArgs),
    /// Run the S3-compatible server (HTTPS, every object encrypted at rest).
    Server(server::ServerArgs),
    /// Manage identities, access keys and identity policies on a running server.
    Admin(admin::AdminArgs),
    /// Check or search the audit log (<data-dir>/audit).
    Audit(audit::AuditArgs),
    /// Copy files to or from S3 (Coffer or any S3 store), optionally encrypted on this machine.
    Cp(s3cmd::CpArgs),
    /// List buckets, or objects under s3://BUCKET[/PREFIX].
    Ls(s3cmd::LsArgs),
    /// Delete an object (or, with -r, every object under a prefix).
    Rm(s3cmd::RmArgs),
    /// Make a bucket.
    Mb(s3cmd::MbArgs),
    /// Write an object to standard output (decrypted if client-encrypted).
    Cat(s3cmd::CatArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => local::keygen(&args),
        Command::Encrypt(args) => local::encrypt(&args),
        Command::Decrypt(args) => local::decrypt(&args),
        Command::Server(args) => server::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Cp(args) => s3cmd::cp(args),
        Command::Ls(args) => s3cmd::ls(args),
        Command::Rm(args) => s3cmd::rm(args),
        Command::Mb(args) => s3cmd::mb(args),
        Command::Cat(args) => s3cmd::cat(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
