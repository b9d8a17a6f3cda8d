//! [`IdentityStore`]: identities, their access keys and policies, bucket owners and bucket
//! policies — the data the server's authorization decisions are made from.

use std::collections::BTreeMap;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::error::MetaResult;

/// Identities, access keys, identity policies, bucket owners and bucket policies.
///
/// The server reads everything at once ([`snapshot`](Self::snapshot)) into memory and reads
/// it again after each change, so no request's decision touches the store. The store keeps
/// policy documents as given: parsing and validating them is the caller's job.
///
/// # Contract
/// - **Atomicity and durability** as for [`crate::MetaStore`]: each method is one
///   transaction; an `Ok` write survives a restart. [`snapshot`](Self::snapshot) is one
///   consistent read.
/// - **Referential integrity.** An access key or identity policy belongs to an existing
///   identity: writing one for an absent identity is [`MetaError::NoSuchIdentity`], and
///   [`delete_identity`](Self::delete_identity) removes the identity's keys and policies with
///   it. A bucket policy belongs to an existing bucket ([`MetaError::NoSuchBucket`]) and is
///   removed by [`crate::MetaStore::delete_bucket`]. Bucket owners are written by
///   [`crate::MetaStore::create_bucket`] only.
/// - **Uniqueness.** Identity names and access key ids are unique across the store:
///   [`MetaError::AlreadyExists`].
/// - **Secrets.** Secret access keys are stored as given (the database is page-encrypted)
///   and handed out only as [`SecretAccessKey`]; no error message contains one.
///
/// [`MetaError::NoSuchIdentity`]: crate::MetaError::NoSuchIdentity
/// [`MetaError::NoSuchBucket`]: crate::MetaError::NoSuchBucket
/// [`MetaError::AlreadyExists`]: crate::MetaError::AlreadyExists
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Everything, in one consistent read.
    async fn snapshot(&self) -> MetaResult<IdentitySnapshot>;

    /// Creates an identity. `AlreadyExists` if the name is taken.
    async fn create_identity(&self, identity: &IdentityRecord) -> MetaResult<()>;

    /// Enables or disables an identity. `NoSuchIdentity`.
    async fn set_identity_enabled(&self, name: &str, enabled: bool) -> MetaResult<()>;

    /// Deletes an identity with its access keys and identity policies. `NoSuchIdentity`;
    /// [`crate::MetaError::IdentityOwnsBucket`] (nothing deleted) while it owns a bucket.
    async fn delete_identity(&self, name: &str) -> MetaResult<()>;

    /// Adds an access key to `key.identity`. `NoSuchIdentity`; `AlreadyExists` if the access
    /// key id is taken (by any identity). Limits (at most two keys) are the caller's.
    async fn put_access_key(&self, key: &AccessKey) -> MetaResult<()>;

    /// Deletes access key `access_key` of `identity`. [`crate::MetaError::NoSuchAccessKey`]
    /// if that identity has no such key.
    async fn delete_access_key(&self, identity: &str, access_key: &str) -> MetaResult<()>;

    /// Rotation: in one transaction, deletes `old_access_key` of `new.identity` and adds
    /// `new`, so the old key stops working the moment the new one exists.
    /// [`crate::MetaError::NoSuchAccessKey`]; `AlreadyExists` if `new`'s id is taken (the old
    /// key is then kept).
    async fn replace_access_key(&self, old_access_key: &str, new: &AccessKey) -> MetaResult<()>;

    /// Sets (inserts or replaces) identity policy `policy_name` of `identity`.
    /// `NoSuchIdentity`.
    async fn put_identity_policy(
        &self,
        identity: &str,
        policy_name: &str,
        document: &str,
    ) -> MetaResult<()>;

    /// Deletes identity policy `policy_name` of `identity`. [`crate::MetaError::NoSuchPolicy`].
    async fn delete_identity_policy(&self, identity: &str, policy_name: &str) -> MetaResult<()>;

    /// Sets (inserts or replaces) the bucket's policy. `NoSuchBucket`.
    async fn put_bucket_policy(&self, bucket: &str, document: &str) -> MetaResult<()>;

    /// Removes the bucket's policy; removing an absent policy succeeds (as S3's
    /// `DeleteBucketPolicy`).
    async fn delete_bucket_policy(&self, bucket: &str) -> MetaResult<()>;
}

/// An identity: a user, a service account, or the root identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    /// Unique; the alphabet is the caller's to check.
    pub name: String,
    /// `root`, `user` or `service` (informational; the caller checks the value).
    pub kind: String,
    /// A disabled identity's keys do not authenticate.
    pub enabled: bool,
    /// Unix milliseconds.
    pub created: i64,
}

/// A secret access key: no `Debug`, no `Clone`, wiped on drop, read through
/// [`expose`](Self::expose).
pub struct SecretAccessKey(Zeroizing<String>);

impl SecretAccessKey {
    pub fn new(secret: Zeroizing<String>) -> SecretAccessKey {
        SecretAccessKey(secret)
    }

    /// The secret, for signature verification.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A second owned copy (for a store that must keep one and hand one out).
    pub(crate) fn duplicate(&self) -> SecretAccessKey {
        SecretAccessKey(Zeroizing::new(self.0.as_str().to_owned()))
    }
}

/// An access key pair and the identity it signs for. No `Debug`: it holds a secret.
pub struct AccessKey {
    /// The access key id (unique across the store).
    pub access_key: String,
    pub identity: String,
    pub secret: SecretAccessKey,
}

impl AccessKey {
    pub(crate) fn duplicate(&self) -> AccessKey {
        AccessKey {
            access_key: self.access_key.clone(),
            identity: self.identity.clone(),
            secret: self.secret.duplicate(),
        }
    }
}

/// Everything an [`IdentityStore`] holds, as of one moment. Maps are ordered by their keys.
#[derive(Default)]
pub struct IdentitySnapshot {
    /// By name.
    pub identities: BTreeMap<String, IdentityRecord>,
    /// By access key id.
    pub access_keys: BTreeMap<String, AccessKey>,
    /// (identity, policy name) → policy document.
    pub identity_policies: BTreeMap<(String, String), String>,
    /// Bucket → owning identity. Buckets created before ownership existed have no entry
    /// (their owner is `root`).
    pub bucket_owners: BTreeMap<String, String>,
    /// Bucket → policy document.
    pub bucket_policies: BTreeMap<String, String>,
}
