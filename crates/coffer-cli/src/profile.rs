//! Connection settings of the client commands: `--profile` in `~/.config/coffer/config.toml`,
//! overridden by the usual `AWS_*` environment variables, overridden by flags.
//!
//! ```toml
//! [profiles.default]
//! endpoint = "https://127.0.0.1:9443"
//! region = "us-east-1"
//! access_key_id = "AKID…"
//! secret_access_key = "…"
//! ca_bundle = "/srv/coffer/tls/ca.pem"
//! kek = "alias/backups"          # default for --client-encrypt, and tried on download
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use coffer_client::{Endpoint, Kek, Keyring, KmsKek, PassphraseKek, SecretBytes};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Where the store is and who is calling.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Profile in the config file (~/.config/coffer/config.toml, or $COFFER_CONFIG).
    #[arg(long, env = "COFFER_PROFILE", default_value = "default", global = true)]
    pub profile: String,
    /// The S3 (and KMS) endpoint URL [default: the profile's, else AWS].
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true)]
    pub endpoint: Option<String>,
    /// PEM file of an extra CA to trust (a Coffer server's <data-dir>/tls/ca.pem).
    #[arg(long, env = "AWS_CA_BUNDLE", global = true)]
    pub ca_bundle: Option<PathBuf>,
    /// Region to sign for [default: the profile's, else us-east-1].
    #[arg(long, env = "AWS_REGION", global = true)]
    pub region: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    ca_bundle: Option<PathBuf>,
    /// The default key-encryption key (same syntax as --kek).
    pub kek: Option<String>,
    /// Virtual-host addressing instead of path style (default: path style).
    virtual_host: Option<bool>,
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Some(s) = self.secret_access_key.as_mut() {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COFFER_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("coffer/config.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/coffer/config.toml"))
}

/// Loads `--profile` from the config file. A missing file is an empty configuration; a named
/// profile other than `default` that is absent is an error.
pub fn load_profile(name: &str) -> Result<Profile> {
    let Some(path) = config_path() else {
        return Ok(Profile::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if name != "default" {
                bail!("profile {name:?}: no config file at {}", path.display());
            }
            return Ok(Profile::default());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut config: ConfigFile =
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    match config.profiles.remove(name) {
        Some(p) => Ok(p),
        None if name == "default" => Ok(Profile::default()),
        None => bail!(
            "no profile {name:?} in {} (it has: {})",
            path.display(),
            config
                .profiles
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ConnectionArgs {
    /// The endpoint: flags, then environment (clap already merged those two), then profile.
    pub fn endpoint(&self, profile: &Profile) -> Result<Endpoint> {
        let access_key_id = env("AWS_ACCESS_KEY_ID")
            .or_else(|| profile.access_key_id.clone())
            .ok_or_else(|| {
                anyhow!(
                    "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                     access_key_id and secret_access_key in the profile {:?}",
                    self.profile
                )
            })?;
        let secret_access_key = Zeroizing::new(
            env("AWS_SECRET_ACCESS_KEY")
                .or_else(|| profile.secret_access_key.clone())
                .ok_or_else(|| {
                    anyhow!(
                        "no secret key: set AWS_SECRET_ACCESS_KEY (the secret of {access_key_id})"
                    )
                })?,
        );
        let url = self.endpoint.clone().or_else(|| profile.endpoint.clone());
        if let Some(u) = &url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                bail!("endpoint {u:?}: expected https://HOST[:PORT]");
            }
        }
        Ok(Endpoint {
            url,
            region: self
                .region
                .clone()
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .or_else(|| profile.region.clone())
                .unwrap_or_else(|| "us-east-1".into()),
            access_key_id,
            secret_access_key,
            ca_bundle: self.ca_bundle.clone().or_else(|| profile.ca_bundle.clone()),
            path_style: !profile.virtual_host.unwrap_or(false),
        })
    }
}

/// How a key-encryption key is named on the command line (`--kek`) or in a profile.
pub fn parse_kek(
    spec: &str,
    endpoint: &Endpoint,
    passphrase_file: Option<&PathBuf>,
) -> Result<Kek> {
    if let Some(path) = spec.strip_prefix("file:") {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read key file {path}"))?,
        );
        let key = coffer_client::KeyFile::parse(&text).map_err(|e| anyhow!("{path}: {e}"))?;
        return Ok(Kek::KeyFile(key));
    }
    if spec == "passphrase" {
        let bytes = match (passphrase_file, env("COFFER_PASSPHRASE")) {
            (Some(path), _) => {
                let mut text = Zeroizing::new(
                    std::fs::read(path)
                        .with_context(|| format!("cannot read passphrase file {}", path.display()))?,
                );
                while text.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    text.pop();
                }
                text.to_vec()
            }
            (None, Some(p)) => p.into_bytes(),
            (None, None) => bail!(
                "--kek passphrase needs the passphrase: set COFFER_PASSPHRASE or give --passphrase-file FILE"
            ),
        };
        return Ok(Kek::Passphrase(PassphraseKek::new(SecretBytes::new(
            bytes,
        ))?));
    }
    if spec.is_empty() || spec.contains(char::is_whitespace) {
        bail!("--kek {spec:?}: expected a KMS key id, ARN or alias/NAME, file:PATH, or passphrase");
    }
    Ok(Kek::Kms(KmsKek::new(
        endpoint.kms_client()?,
        Some(spec.to_owned()),
    )))
}

/// The keys a download may need: the KMS (always; objects name their KMS key), plus the
/// key file or passphrase given with --kek or in the profile.
pub fn keyring(
    kek: Option<&str>,
    profile: &Profile,
    endpoint: &Endpoint,
    passphrase_file: Option<&PathBuf>,
) -> Result<Keyring> {
    let mut ring = Keyring::new().with(Kek::Kms(KmsKek::new(endpoint.kms_client()?, None)));
    if let Some(spec) = kek.or(profile.kek.as_deref()) {
        match parse_kek(spec, endpoint, passphrase_file)? {
            Kek::Kms(_) => {}
            other => ring.add(other),
        }
    }
    Ok(ring)
}
