//! Coffer's client-side encryption: objects are encrypted on the client, in Coffer's object
//! format (spec/object-format.md), before they reach any S3-compatible store; the store (and
//! the KMS, when one wraps the keys) never sees plaintext.
//!
//! - [`kek`]: key-encryption-key providers — Coffer's KMS through the AWS KMS API
//!   ([`KmsKek`]), a local key file from `coffer keygen`, a passphrase (Argon2id,
//!   [`PassphraseKek`]) — and the [`Keyring`] a reader unwraps with;
//! - [`envelope`]: the object context (`bucket`, `key`) and in-memory encrypt/decrypt;
//! - [`transfer`]: parallel multipart uploads and ranged downloads with bounded memory,
//!   client-side encryption optionally combined with server-side encryption (SSE-S3, SSE-KMS,
//!   SSE-C); client-encrypted objects carry `x-amz-meta-coffer-client-encrypted: v1`;
//! - [`endpoint`]: `aws-sdk-s3` / `aws-sdk-kms` clients trusting a given CA bundle.
//!
//! ```no_run
//! # async fn demo() -> coffer_client::Result<()> {
//! use coffer_client::{Endpoint, Kek, Keyring, KmsKek, ServerSide, Transfers};
//! let endpoint = Endpoint {
//!     url: Some("https://127.0.0.1:9443".into()),
//!     region: "us-east-1".into(),
//!     access_key_id: "AKID".into(),
//!     secret_access_key: "secret".to_owned().into(),
//!     ca_bundle: Some("coffer-data/tls/ca.pem".into()),
//!     path_style: true,
//! };
//! let kek = Kek::Kms(KmsKek::new(endpoint.kms_client()?, Some("alias/backups".into())));
//! let transfers = Transfers::new(endpoint.s3_client()?);
//! transfers
//!     .put_bytes(b"hello".to_vec(), "bucket", "greeting", Some(&kek), &ServerSide::Default)
//!     .await?;
//! let keyring = Keyring::new().with(kek);
//! let back = transfers.get_bytes("bucket", "greeting", &keyring, &ServerSide::Default).await?;
//! assert_eq!(back, b"hello");
//! # Ok(()) }
//! ```
//!
//! See `examples/roundtrip.rs` and docs/client.md.
#![forbid(unsafe_code)]

pub mod endpoint;
pub mod envelope;
pub mod error;
pub mod kek;
pub mod transfer;

/// The SDKs the client is built on, for callers that need more of their APIs.
pub use aws_sdk_kms;
pub use aws_sdk_s3;
pub use coffer_format::keyfile::KeyFile;
pub use coffer_format::SecretBytes;
pub use endpoint::Endpoint;
pub use envelope::{decrypt_object, encrypt_object, object_context};
pub use error::{Error, Result};
pub use kek::{Kek, Keyring, KmsKek, PassphraseKek, PASSPHRASE_V1};
pub use transfer::{
    DownloadSummary, NoProgress, Progress, ServerSide, Transfers, UploadSummary, KEK_HINT_NAME,
    MARKER_NAME, MARKER_VALUE,
};
