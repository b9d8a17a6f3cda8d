//! `coffer admin …`: identities, access keys and identity policies, through the server's
//! admin API (`X-Amz-Target: CofferAdmin.<Operation>`, SigV4-signed with the caller's
//! credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`). Prints JSON.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::signed::{EndpointArgs, SignedClient};

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Users and service accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Access key pairs (a secret is shown once, when created).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Identity policies (IAM-style JSON; see spec/policy.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user (or, with --service, a service account). It can do nothing until a
    /// policy allows it, and has no access key until `coffer admin key create`.
    Create {
        name: String,
        #[arg(long)]
        service: bool,
    },
    /// Show one identity.
    Get { name: String },
    /// List every identity.
    List,
    /// Delete an identity with its keys and policies (refused while it owns buckets).
    Delete { name: String },
    /// Re-enable a disabled identity.
    Enable { name: String },
    /// Disable an identity: its access keys stop working at once.
    Disable { name: String },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create an access key pair for USER (at most two per identity).
    Create { user: String },
    /// List USER's access key ids.
    List { user: String },
    /// Delete one of USER's access keys.
    Delete { user: String, access_key: String },
    /// Replace one of USER's access keys with a new pair (the old one stops working).
    Rotate { user: String, access_key: String },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Attach (or replace) the policy NAME of USER from FILE (`-` for stdin).
    Put {
        user: String,
        name: String,
        file: PathBuf,
    },
    /// Print USER's policy NAME.
    Get { user: String, name: String },
    /// Remove USER's policy NAME.
    Delete { user: String, name: String },
    /// List USER's policy names.
    List { user: String },
}

fn read_doc(file: &PathBuf) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))
    }
}

pub fn run(args: AdminArgs) -> Result<()> {
    let (op, body) = match &args.command {
        AdminCommand::User(c) => match c {
            UserCommand::Create { name, service } => (
                "CreateUser",
                json!({"UserName": name, "Kind": if *service { "service" } else { "user" }}),
            ),
            UserCommand::Get { name } => ("GetUser", json!({"UserName": name})),
            UserCommand::List => ("ListUsers", json!({})),
            UserCommand::Delete { name } => ("DeleteUser", json!({"UserName": name})),
            UserCommand::Enable { name } => ("EnableUser", json!({"UserName": name})),
            UserCommand::Disable { name } => ("DisableUser", json!({"UserName": name})),
        },
        AdminCommand::Key(c) => match c {
            KeyCommand::Create { user } => ("CreateAccessKey", json!({"UserName": user})),
            KeyCommand::List { user } => ("ListAccessKeys", json!({"UserName": user})),
            KeyCommand::Delete { user, access_key } => (
                "DeleteAccessKey",
                json!({"UserName": user, "AccessKeyId": access_key}),
            ),
            KeyCommand::Rotate { user, access_key } => (
                "RotateAccessKey",
                json!({"UserName": user, "AccessKeyId": access_key}),
            ),
        },
        AdminCommand::Policy(c) => match c {
            PolicyCommand::Put { user, name, file } => (
                "PutUserPolicy",
                json!({"UserName": user, "PolicyName": name, "PolicyDocument": read_doc(file)?}),
            ),
            PolicyCommand::Get { user, name } => (
                "GetUserPolicy",
                json!({"UserName": user, "PolicyName": name}),
            ),
            PolicyCommand::Delete { user, name } => (
                "DeleteUserPolicy",
                json!({"UserName": user, "PolicyName": name}),
            ),
            PolicyCommand::List { user } => ("ListUserPolicies", json!({"UserName": user})),
        },
    };
    let client = SignedClient::new(&args.endpoint)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out: Value = rt.block_on(client.post_json("s3", &format!("CofferAdmin.{op}"), &body))?;
    if out.as_object().is_some_and(|o| !o.is_empty()) {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
