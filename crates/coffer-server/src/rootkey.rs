//! Opening the KMS with the operator's root-key choice (a key file, by default
//! `<data-dir>/root.key`, or a passphrase), for the server and the offline commands
//! (`coffer audit verify`) alike.

use std::path::Path;

use coffer_kms::{KeyFileSealer, Kms, KmsConfig, PassphraseSealer, Sealer};

use coffer_outcome::ServerResult;

/// Opens (or, if `<data-dir>/kms` holds no sealed root, initialises) the KMS under
/// `data_dir`. `passphrase` selects the passphrase sealer; otherwise the key file
/// `root_key_file` (default `<data-dir>/root.key`) seals the root key.
///
/// Opening while a server has the same KMS open is safe: the key store is SQLite in
/// rollback-journal mode, this reads it (taking a shared lock for an instant) and writes
/// nothing unless the schema is older than this build; a server holding a write lock at that
/// instant makes this fail with a "database is locked" error rather than wait.
pub async fn open_kms(
    data_dir: &Path,
    root_key_file: Option<&Path>,
    passphrase: Option<&str>,
) -> ServerResult<Kms> {
    let sealer: Box<dyn Sealer> = match passphrase {
        Some(p) => Box::new(PassphraseSealer::new(
            coffer_format::SecretBytes::new(p.as_bytes().to_vec()),
            Default::default(),
        )),
        None => Box::new(KeyFileSealer::new(
            root_key_file
                .map(Path::to_path_buf)
                .unwrap_or_else(|| data_dir.join("root.key")),
        )),
    };
    Ok(
        Kms::builder(KmsConfig::new(data_dir.join("kms")), sealer.as_ref())
            .open()
            .await?,
    )
}
