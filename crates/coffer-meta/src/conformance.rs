//! The conformance suites every [`MetaStore`] and [`IdentityStore`] implementation must pass
//! (STYLE.md §7).
//!
//! An implementation's tests implement [`Harness`] and call [`run_meta`] and
//! [`run_identity`] inside a Tokio runtime. A broken rule panics with the rule's name, like
//! any test assertion; an unexpected store error is returned.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{MetaError, MetaResult};
use crate::identity::{AccessKey, IdentityRecord, IdentityStore, SecretAccessKey};
use crate::meta::{
    BucketConfig, DeleteRequest, Deleted, EtagMatch, MetaStore, ObjectUpdate, Precondition, Written,
};
use crate::record::{
    stored_version, BucketEncryption, Checksums, ObjectHeaders, ObjectRecord, PartRecord,
    Retention, RetentionMode, Segment, SseRecord, UploadRecord, RECORD_VERSION,
};

/// One store, seen through both traits (one backend, one database).
pub struct Stores {
    pub meta: Arc<dyn MetaStore>,
    pub identity: Arc<dyn IdentityStore>,
}

/// Gives the suites stores to test.
pub trait Harness {
    /// A new, empty store.
    fn fresh(&mut self) -> Stores;
    /// The store most recently returned by `fresh`, closed and opened again; `None` for an
    /// implementation that does not persist (its durability checks are skipped). The suite
    /// drops its handles before calling this.
    fn reopen(&mut self) -> Option<Stores>;
    /// Every record the most recent store holds (objects, uploads, parts, bucket
    /// encryption), in its stored encoding.
    fn stored_records(&mut self) -> Vec<String>;
}

/// Runs every [`MetaStore`] check.
pub async fn run_meta(h: &mut dyn Harness) -> MetaResult<()> {
    buckets_follow_their_rules(h).await?;
    put_object_replaces_atomically_and_returns_the_old_record(h).await?;
    conditional_writes_refuse_without_writing(h).await?;
    deletes_return_what_they_removed(h).await?;
    listing_is_ordered_and_pages_by_prefix_and_marker(h).await?;
    uploads_and_parts_follow_their_lifecycle(h).await?;
    complete_upload_is_one_transaction(h).await?;
    non_empty_buckets_are_not_deleted(h).await?;
    bucket_config_follows_its_bucket(h).await?;
    versions_follow_s3_rules(h).await?;
    suspended_versioning_replaces_the_null_version(h).await?;
    object_lock_refuses_removal(h).await?;
    version_listing_pages(h).await?;
    metadata_survives_reopen(h).await?;
    stored_records_carry_the_version_marker(h).await?;
    Ok(())
}

/// Runs every [`IdentityStore`] check.
pub async fn run_identity(h: &mut dyn Harness) -> MetaResult<()> {
    identities_are_unique_and_updatable(h).await?;
    access_keys_are_unique_and_belong_to_their_identity(h).await?;
    rotation_replaces_a_key_in_one_step(h).await?;
    identity_policies_follow_their_identity(h).await?;
    bucket_policies_follow_their_bucket(h).await?;
    deleting_an_identity_takes_its_keys_and_policies(h).await?;
    identities_survive_reopen(h).await?;
    Ok(())
}

// ---- samples ----

/// A sample object whose blob names derive from `tag`.
pub fn sample_object(tag: &str) -> ObjectRecord {
    ObjectRecord {
        version_id: format!("version-{tag}"),
        size: 11,
        etag: format!("etag-{tag}"),
        last_modified: 1_700_000_000_000,
        headers: ObjectHeaders {
            content_type: Some("text/plain".into()),
            user_metadata: BTreeMap::from([("colour".to_owned(), "blue".to_owned())]),
            ..ObjectHeaders::default()
        },
        checksums: Checksums {
            crc32c: Some("yZRlqg==".into()),
            kind: Some("FULL_OBJECT".into()),
            ..Checksums::default()
        },
        sse: SseRecord::Kms {
            key_arn: "arn:aws:kms:local:000000000000:key/k".into(),
            context: BTreeMap::from([("aws:s3:arn".to_owned(), "arn:aws:s3:::b/k".to_owned())]),
        },
        bucket_key_enabled: false,
        segments: vec![sample_segment(&format!("blob-{tag}"), 1)],
        versioned: false,
        delete_marker: false,
        retention: None,
        legal_hold: false,
        tags: BTreeMap::new(),
    }
}

fn sample_segment(blob: &str, part_number: u32) -> Segment {
    Segment {
        blob: blob.to_owned(),
        version: "v".into(),
        part_number,
        plain_len: 11,
        blob_len: 99,
        header_len: 40,
        etag: format!("part-etag-{blob}"),
    }
}

/// A sample upload of `key` in `bucket`.
pub fn sample_upload(bucket: &str, key: &str) -> UploadRecord {
    UploadRecord {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        initiated: 1_700_000_000_000,
        headers: ObjectHeaders::default(),
        sse: SseRecord::C {
            fingerprint: "fp".into(),
        },
        bucket_key_enabled: false,
        checksum_algorithm: Some("CRC32C".into()),
        checksum_type: None,
        retention: None,
        legal_hold: false,
        tags: BTreeMap::new(),
    }
}

/// A sample part stored in blob `blob`.
pub fn sample_part(blob: &str, part_number: u32) -> PartRecord {
    PartRecord {
        segment: sample_segment(blob, part_number),
        last_modified: 1_700_000_000_000 + i64::from(part_number),
        checksums: Checksums::default(),
    }
}

fn identity(name: &str, kind: &str) -> IdentityRecord {
    IdentityRecord {
        name: name.to_owned(),
        kind: kind.to_owned(),
        enabled: true,
        created: 1_700_000_000_000,
    }
}

fn access_key(id: &str, identity: &str, secret: &str) -> AccessKey {
    AccessKey {
        access_key: id.to_owned(),
        identity: identity.to_owned(),
        secret: SecretAccessKey::new(Zeroizing::new(secret.to_owned())),
    }
}

fn expect_err<T: Debug>(result: MetaResult<T>, expected: MetaError, rule: &str) {
    match result {
        Err(e) if e == expected => {}
        other => panic!("{rule}: expected Err({expected:?}), got {other:?}"),
    }
}

/// A delete of the current object at time 0, with no bypass.
const DELETE: DeleteRequest<'static> = DeleteRequest {
    version_id: None,
    marker_version: "marker",
    now: 0,
    bypass_governance: false,
};

/// What a write in an unversioned bucket replaced: at most one record, no version id.
fn replaced(w: Written) -> Option<ObjectRecord> {
    assert!(
        w.replaced.len() <= 1,
        "an unversioned write replaces at most one record"
    );
    assert_eq!(
        w.version_id, None,
        "an unversioned write reports no version id"
    );
    w.replaced.into_iter().next()
}

/// What a delete in an unversioned bucket removed (no marker, at most one record).
fn removed(d: Deleted) -> Option<ObjectRecord> {
    assert!(
        !d.delete_marker,
        "an unversioned delete makes no delete marker"
    );
    assert!(
        d.removed.len() <= 1,
        "an unversioned delete removes at most one record"
    );
    d.removed.into_iter().next()
}

fn keys<T>(rows: &[(String, T)]) -> Vec<&str> {
    rows.iter().map(|(k, _)| k.as_str()).collect()
}

// ---- MetaStore ----

async fn buckets_follow_their_rules(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    assert!(
        s.meta.list_buckets().await?.is_empty(),
        "a fresh store is empty"
    );
    s.meta.create_bucket("beta", 2, "alice").await?;
    s.meta.create_bucket("alpha", 1, "bob").await?;
    let names: Vec<_> = s.meta.list_buckets().await?;
    assert_eq!(
        names
            .iter()
            .map(|b| (b.name.as_str(), b.created))
            .collect::<Vec<_>>(),
        [("alpha", 1), ("beta", 2)],
        "list_buckets is by name, with creation times"
    );
    assert!(
        s.meta.bucket_exists("alpha").await?,
        "created bucket exists"
    );
    assert!(
        !s.meta.bucket_exists("gamma").await?,
        "absent bucket does not"
    );
    expect_err(
        s.meta.create_bucket("beta", 3, "carol").await,
        MetaError::BucketAlreadyExists {
            owner: "alice".into(),
        },
        "creating an existing bucket reports its owner",
    );
    let snap = s.identity.snapshot().await?;
    assert_eq!(
        snap.bucket_owners.get("beta").map(String::as_str),
        Some("alice"),
        "a refused create leaves the owner unchanged"
    );
    assert_eq!(
        s.meta.list_buckets().await?[1].created,
        2,
        "a refused create leaves the bucket unchanged"
    );
    assert_eq!(s.meta.bucket_encryption("alpha").await?, None);
    let enc = BucketEncryption {
        algorithm: "aws:kms".into(),
        kms_key_id: Some("alias/k".into()),
        bucket_key_enabled: true,
    };
    s.meta.set_bucket_encryption("alpha", Some(&enc)).await?;
    assert_eq!(
        s.meta.bucket_encryption("alpha").await?,
        Some(enc.clone()),
        "bucket encryption reads back"
    );
    s.meta.set_bucket_encryption("alpha", None).await?;
    assert_eq!(
        s.meta.bucket_encryption("alpha").await?,
        None,
        "None removes it"
    );
    expect_err(
        s.meta.bucket_encryption("gamma").await,
        MetaError::NoSuchBucket,
        "encryption of an absent bucket",
    );
    expect_err(
        s.meta.set_bucket_encryption("gamma", Some(&enc)).await,
        MetaError::NoSuchBucket,
        "setting encryption of an absent bucket",
    );
    expect_err(
        s.meta.delete_bucket("gamma").await,
        MetaError::NoSuchBucket,
        "deleting an absent bucket",
    );
    s.meta.delete_bucket("alpha").await?;
    assert!(
        !s.meta.bucket_exists("alpha").await?,
        "deleted bucket is gone"
    );
    s.meta.create_bucket("alpha", 5, "dave").await?;
    assert_eq!(
        s.identity
            .snapshot()
            .await?
            .bucket_owners
            .get("alpha")
            .map(String::as_str),
        Some("dave"),
        "a re-created bucket has its new owner"
    );
    Ok(())
}

async fn put_object_replaces_atomically_and_returns_the_old_record(
    h: &mut dyn Harness,
) -> MetaResult<()> {
    let s = h.fresh();
    expect_err(
        s.meta
            .put_object("nope", "k", &sample_object("1"), &Precondition::NONE)
            .await,
        MetaError::NoSuchBucket,
        "put into an absent bucket",
    );
    assert_eq!(
        s.meta.object("nope", "k").await?,
        None,
        "absent bucket reads None"
    );
    s.meta.create_bucket("b", 1, "root").await?;
    assert_eq!(
        s.meta.object("b", "k").await?,
        None,
        "absent key reads None"
    );
    let first = sample_object("1");
    let second = sample_object("2");
    assert_eq!(
        s.meta
            .put_object("b", "k", &first, &Precondition::NONE)
            .await
            .map(replaced)?,
        None,
        "a first put replaces nothing"
    );
    assert_eq!(
        s.meta.object("b", "k").await?,
        Some(first.clone()),
        "an object reads back exactly as written"
    );
    assert_eq!(
        s.meta
            .put_object("b", "k", &second, &Precondition::NONE)
            .await
            .map(replaced)?,
        Some(first),
        "a replacing put returns the record it replaced"
    );
    assert_eq!(
        s.meta.object("b", "k").await?,
        Some(second),
        "after a replace the new record is visible"
    );
    let blobs = s.meta.referenced_blobs().await?;
    assert!(
        blobs.contains("blob-2") && !blobs.contains("blob-1"),
        "a replaced object's blobs are no longer referenced: {blobs:?}"
    );
    Ok(())
}

async fn conditional_writes_refuse_without_writing(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    let current = sample_object("cur");
    let if_match = |m: EtagMatch| Precondition {
        if_none_match_any: false,
        if_match: Some(m),
    };
    expect_err(
        s.meta
            .put_object("b", "k", &current, &if_match(EtagMatch::Any))
            .await,
        MetaError::NoSuchKey,
        "If-Match on an absent object",
    );
    assert_eq!(
        s.meta.object("b", "k").await?,
        None,
        "a refused put writes nothing"
    );
    let create_only = Precondition {
        if_none_match_any: true,
        if_match: None,
    };
    assert_eq!(
        s.meta
            .put_object("b", "k", &current, &create_only)
            .await
            .map(replaced)?,
        None,
        "If-None-Match: * on an absent object succeeds"
    );
    expect_err(
        s.meta
            .put_object("b", "k", &sample_object("x"), &create_only)
            .await,
        MetaError::PreconditionFailed,
        "If-None-Match: * on an existing object",
    );
    for refused in [
        EtagMatch::Strong("etag-other".into()),
        EtagMatch::Weak("etag-cur".into()),
    ] {
        expect_err(
            s.meta
                .put_object("b", "k", &sample_object("x"), &if_match(refused.clone()))
                .await,
            MetaError::PreconditionFailed,
            &format!("If-Match {refused:?} against etag-cur"),
        );
    }
    assert_eq!(
        s.meta.object("b", "k").await?,
        Some(current.clone()),
        "refused puts leave the current object"
    );
    let next = sample_object("next");
    assert_eq!(
        s.meta
            .put_object(
                "b",
                "k",
                &next,
                &if_match(EtagMatch::Strong("etag-cur".into()))
            )
            .await
            .map(replaced)?,
        Some(current),
        "If-Match with the current ETag replaces it"
    );
    assert_eq!(
        s.meta
            .put_object("b", "k", &sample_object("last"), &if_match(EtagMatch::Any))
            .await
            .map(replaced)?,
        Some(next),
        "If-Match: * replaces any object"
    );
    Ok(())
}

async fn deletes_return_what_they_removed(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    let rec = sample_object("d");
    s.meta
        .put_object("b", "k", &rec, &Precondition::NONE)
        .await?;
    assert_eq!(
        s.meta.delete_object("b", "k", &DELETE).await.map(removed)?,
        Some(rec),
        "delete returns the removed record"
    );
    assert_eq!(
        s.meta.object("b", "k").await?,
        None,
        "deleted object is gone"
    );
    assert_eq!(
        s.meta.delete_object("b", "k", &DELETE).await.map(removed)?,
        None,
        "deleting again is idempotent"
    );
    assert_eq!(
        s.meta
            .delete_object("nope", "k", &DELETE)
            .await
            .map(removed)?,
        None,
        "deleting in an absent bucket returns None"
    );
    assert!(
        !s.meta.referenced_blobs().await?.contains("blob-d"),
        "a deleted object's blobs are no longer referenced"
    );
    Ok(())
}

async fn listing_is_ordered_and_pages_by_prefix_and_marker(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    s.meta.create_bucket("other", 1, "root").await?;
    // Inserted out of order; 'é' (0xC3 0xA9) sorts after 'z' as bytes, "a/" before "a0".
    let stored = ["b", "é", "a0", "a/c", "z", "a", "a/b", "ab", "a/b/c"];
    for key in stored {
        s.meta
            .put_object("b", key, &sample_object(key), &Precondition::NONE)
            .await?;
    }
    s.meta
        .put_object("other", "a/x", &sample_object("o"), &Precondition::NONE)
        .await?;
    let all = s.meta.list_objects("b", "", "", 1000).await?;
    assert_eq!(
        keys(&all),
        ["a", "a/b", "a/b/c", "a/c", "a0", "ab", "b", "z", "é"],
        "list_objects is in byte order and holds only this bucket's keys"
    );
    assert!(
        all.iter().all(|(k, r)| *r == sample_object(k)),
        "listed records are the stored ones"
    );
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page = s.meta.list_objects("b", "", &after, 2).await?;
        assert!(page.len() <= 2, "a page holds at most limit entries");
        let done = page.len() < 2;
        if let Some((last, _)) = page.last() {
            after = last.clone();
        }
        paged.extend(page.into_iter().map(|(k, _)| k));
        if done {
            break;
        }
    }
    assert_eq!(paged, keys(&all), "pages resume strictly after the marker");
    assert_eq!(
        keys(&s.meta.list_objects("b", "a/", "", 1000).await?),
        ["a/b", "a/b/c", "a/c"],
        "prefix selects keys that start with it"
    );
    assert_eq!(
        keys(&s.meta.list_objects("b", "a/", "a/b", 1000).await?),
        ["a/b/c", "a/c"],
        "the marker is exclusive inside the prefix"
    );
    assert_eq!(
        keys(&s.meta.list_objects("b", "a/", "0", 1000).await?),
        ["a/b", "a/b/c", "a/c"],
        "a marker before the prefix starts at the prefix"
    );
    assert!(
        s.meta.list_objects("b", "a/", "b", 1000).await?.is_empty(),
        "a marker past the prefix lists nothing"
    );
    assert_eq!(
        keys(&s.meta.list_objects("b", "a", "a/c", 2).await?),
        ["a0", "ab"],
        "prefix, marker and limit together"
    );
    assert!(
        s.meta.list_objects("b", "", "", 0).await?.is_empty(),
        "limit 0 lists nothing"
    );
    assert!(
        s.meta.list_objects("nope", "", "", 10).await?.is_empty(),
        "an absent bucket lists as empty"
    );
    Ok(())
}

async fn uploads_and_parts_follow_their_lifecycle(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    expect_err(
        s.meta.create_upload("u0", &sample_upload("b", "k")).await,
        MetaError::NoSuchBucket,
        "upload into an absent bucket",
    );
    s.meta.create_bucket("b", 1, "root").await?;
    s.meta.create_bucket("c", 1, "root").await?;
    for (id, key) in [("u3", "k2"), ("u2", "k1"), ("u1", "k1"), ("u4", "j")] {
        s.meta.create_upload(id, &sample_upload("b", key)).await?;
    }
    s.meta
        .create_upload("u9", &sample_upload("c", "k1"))
        .await?;
    expect_err(
        s.meta
            .create_upload("u1", &sample_upload("b", "other"))
            .await,
        MetaError::AlreadyExists("upload u1".into()),
        "a taken upload id",
    );
    assert_eq!(
        s.meta.upload("u1").await?,
        Some(sample_upload("b", "k1")),
        "an upload reads back, unchanged by the refused duplicate"
    );
    assert_eq!(s.meta.upload("none").await?, None, "absent upload is None");
    let ids = |rows: Vec<(String, UploadRecord)>| -> Vec<(String, String)> {
        rows.into_iter().map(|(id, r)| (r.key, id)).collect()
    };
    let pair = |k: &str, id: &str| (k.to_owned(), id.to_owned());
    assert_eq!(
        ids(s.meta.list_uploads("b", "", "", "", 100).await?),
        [
            pair("j", "u4"),
            pair("k1", "u1"),
            pair("k1", "u2"),
            pair("k2", "u3")
        ],
        "list_uploads is by (key, upload id), this bucket only"
    );
    assert_eq!(
        ids(s.meta.list_uploads("b", "k", "k1", "u1", 100).await?),
        [pair("k1", "u2"), pair("k2", "u3")],
        "markers are exclusive on (key, upload id), prefix filters"
    );
    assert_eq!(
        ids(s.meta.list_uploads("b", "", "k1", "", 1).await?),
        [pair("k1", "u1")],
        "a key marker with an empty id marker includes that key's uploads; limit holds"
    );
    assert!(
        s.meta.list_uploads("b", "", "", "", 0).await?.is_empty(),
        "limit 0 lists nothing"
    );

    expect_err(
        s.meta.put_part("none", 1, &sample_part("p", 1)).await,
        MetaError::NoSuchUpload,
        "a part of an absent upload",
    );
    assert_eq!(
        s.meta.put_part("u1", 2, &sample_part("p2", 2)).await?,
        None,
        "a new part replaces nothing"
    );
    s.meta.put_part("u1", 1, &sample_part("p1", 1)).await?;
    assert_eq!(
        s.meta.put_part("u1", 2, &sample_part("p2b", 2)).await?,
        Some(sample_part("p2", 2)),
        "re-uploading a part returns the part it replaced"
    );
    let parts = s.meta.list_parts("u1").await?;
    assert_eq!(
        parts.into_iter().collect::<Vec<_>>(),
        [(1, sample_part("p1", 1)), (2, sample_part("p2b", 2))],
        "list_parts is by part number, latest part wins"
    );
    assert!(
        s.meta.list_parts("none").await?.is_empty(),
        "parts of an absent upload are empty"
    );
    let blobs = s.meta.referenced_blobs().await?;
    assert!(
        blobs.contains("p1") && blobs.contains("p2b") && !blobs.contains("p2"),
        "parts' blobs are referenced, replaced ones not: {blobs:?}"
    );
    assert_eq!(
        s.meta.delete_upload("u1").await?,
        [sample_part("p1", 1), sample_part("p2b", 2)],
        "abort returns the parts in order"
    );
    assert_eq!(
        s.meta.upload("u1").await?,
        None,
        "an aborted upload is gone"
    );
    assert!(
        s.meta.list_parts("u1").await?.is_empty(),
        "an aborted upload's parts are gone"
    );
    assert!(
        !s.meta.referenced_blobs().await?.contains("p1"),
        "an aborted upload's blobs are no longer referenced"
    );
    expect_err(
        s.meta.delete_upload("u1").await,
        MetaError::NoSuchUpload,
        "aborting twice",
    );
    Ok(())
}

async fn complete_upload_is_one_transaction(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    s.meta.create_bucket("c", 1, "root").await?;
    let old = sample_object("old");
    s.meta
        .put_object("b", "k", &old, &Precondition::NONE)
        .await?;
    s.meta.create_upload("u", &sample_upload("b", "k")).await?;
    s.meta.put_part("u", 1, &sample_part("p1", 1)).await?;
    let done = sample_object("done");
    for (bucket, key) in [("c", "k"), ("b", "other")] {
        expect_err(
            s.meta
                .complete_upload("u", bucket, key, &done, &Precondition::NONE)
                .await,
            MetaError::NoSuchUpload,
            "completing an upload under another bucket or key",
        );
    }
    assert_eq!(s.meta.object("c", "k").await?, None, "nothing written");
    expect_err(
        s.meta
            .complete_upload(
                "u",
                "b",
                "k",
                &done,
                &Precondition {
                    if_none_match_any: true,
                    if_match: None,
                },
            )
            .await,
        MetaError::PreconditionFailed,
        "a refused condition on complete",
    );
    assert_eq!(
        s.meta.object("b", "k").await?,
        Some(old.clone()),
        "a refused complete leaves the object"
    );
    assert!(
        s.meta.upload("u").await?.is_some(),
        "a refused complete leaves the upload"
    );
    assert_eq!(
        s.meta.list_parts("u").await?.len(),
        1,
        "a refused complete leaves the parts"
    );
    assert_eq!(
        s.meta
            .complete_upload(
                "u",
                "b",
                "k",
                &done,
                &Precondition {
                    if_none_match_any: false,
                    if_match: Some(EtagMatch::Strong("etag-old".into())),
                },
            )
            .await
            .map(replaced)?,
        Some(old),
        "complete returns the object it replaced"
    );
    assert_eq!(
        s.meta.object("b", "k").await?,
        Some(done.clone()),
        "the completed object is visible"
    );
    assert_eq!(s.meta.upload("u").await?, None, "the upload is gone");
    assert!(
        s.meta.list_parts("u").await?.is_empty(),
        "its parts are gone"
    );
    assert!(
        s.meta.list_uploads("b", "", "", "", 10).await?.is_empty(),
        "it is no longer listed"
    );
    expect_err(
        s.meta
            .complete_upload("u", "b", "k", &done, &Precondition::NONE)
            .await,
        MetaError::NoSuchUpload,
        "completing twice",
    );
    Ok(())
}

async fn non_empty_buckets_are_not_deleted(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "alice").await?;
    s.identity.put_bucket_policy("b", "{\"policy\":1}").await?;
    s.meta
        .put_object("b", "k", &sample_object("k"), &Precondition::NONE)
        .await?;
    expect_err(
        s.meta.delete_bucket("b").await,
        MetaError::BucketNotEmpty,
        "deleting a bucket with an object",
    );
    assert!(
        s.meta.object("b", "k").await?.is_some(),
        "refused delete keeps the object"
    );
    let snap = s.identity.snapshot().await?;
    assert!(
        s.meta.bucket_exists("b").await?
            && snap.bucket_owners.contains_key("b")
            && snap.bucket_policies.contains_key("b"),
        "a refused delete keeps the bucket, its owner and its policy"
    );
    s.meta.delete_object("b", "k", &DELETE).await?;
    // Unfinished uploads do not keep a bucket: they are aborted with it (as S3 does), and
    // their parts come back for their blobs to be deleted. Another bucket's upload stays.
    s.meta.create_upload("u", &sample_upload("b", "k")).await?;
    s.meta
        .create_upload("u2", &sample_upload("b", "k2"))
        .await?;
    s.meta.put_part("u", 1, &sample_part("p1", 1)).await?;
    s.meta.put_part("u", 2, &sample_part("p2", 2)).await?;
    s.meta.put_part("u2", 1, &sample_part("p3", 1)).await?;
    s.meta.create_bucket("other", 1, "alice").await?;
    s.meta
        .create_upload("v", &sample_upload("other", "k"))
        .await?;
    s.meta.put_part("v", 1, &sample_part("q1", 1)).await?;
    let mut blobs: Vec<String> = s
        .meta
        .delete_bucket("b")
        .await?
        .into_iter()
        .map(|p| p.segment.blob)
        .collect();
    blobs.sort();
    assert_eq!(blobs, ["p1", "p2", "p3"], "the aborted uploads' parts");
    assert!(
        s.meta.upload("u").await?.is_none() && s.meta.upload("u2").await?.is_none(),
        "the bucket's uploads are aborted"
    );
    assert!(s.meta.list_parts("u2").await?.is_empty());
    assert_eq!(
        s.meta.list_parts("v").await?.len(),
        1,
        "another bucket's upload stays"
    );
    assert!(s.meta.upload("v").await?.is_some());
    let snap = s.identity.snapshot().await?;
    assert!(
        !s.meta.bucket_exists("b").await?
            && !snap.bucket_owners.contains_key("b")
            && !snap.bucket_policies.contains_key("b"),
        "an empty bucket is deleted with its owner and policy"
    );
    Ok(())
}

/// (S3 version id, is latest, is delete marker) of every version of a bucket.
async fn history(s: &Stores, bucket: &str) -> MetaResult<Vec<(String, String, bool, bool)>> {
    Ok(s.meta
        .list_versions(bucket, "", "", "", 1000)
        .await?
        .into_iter()
        .map(|e| {
            (
                e.key,
                e.record.s3_version_id().to_owned(),
                e.is_latest,
                e.record.delete_marker,
            )
        })
        .collect())
}

fn entry(key: &str, vid: &str, latest: bool, marker: bool) -> (String, String, bool, bool) {
    (key.to_owned(), vid.to_owned(), latest, marker)
}

fn delete_version(version_id: &str) -> DeleteRequest<'_> {
    DeleteRequest {
        version_id: Some(version_id),
        ..DELETE
    }
}

async fn bucket_config_follows_its_bucket(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    expect_err(
        s.meta.bucket_config("nope", BucketConfig::Cors).await,
        MetaError::NoSuchBucket,
        "config of an absent bucket",
    );
    expect_err(
        s.meta
            .set_bucket_config("nope", BucketConfig::Cors, Some("x"))
            .await,
        MetaError::NoSuchBucket,
        "setting config of an absent bucket",
    );
    s.meta.create_bucket("b", 1, "root").await?;
    assert_eq!(s.meta.bucket_config("b", BucketConfig::Cors).await?, None);
    s.meta
        .set_bucket_config("b", BucketConfig::Cors, Some("<cors/>"))
        .await?;
    s.meta
        .set_bucket_config("b", BucketConfig::Tagging, Some("{}"))
        .await?;
    assert_eq!(
        s.meta
            .bucket_config("b", BucketConfig::Cors)
            .await?
            .as_deref(),
        Some("<cors/>"),
        "a config document reads back as set, by kind"
    );
    s.meta
        .set_bucket_config("b", BucketConfig::Cors, None)
        .await?;
    assert_eq!(
        s.meta.bucket_config("b", BucketConfig::Cors).await?,
        None,
        "a removed document is gone"
    );
    assert_eq!(
        s.meta
            .bucket_config("b", BucketConfig::Tagging)
            .await?
            .as_deref(),
        Some("{}"),
        "other kinds are untouched"
    );
    s.meta.delete_bucket("b").await?;
    s.meta.create_bucket("b", 2, "root").await?;
    assert_eq!(
        s.meta.bucket_config("b", BucketConfig::Tagging).await?,
        None,
        "config goes with its bucket"
    );
    Ok(())
}

async fn versions_follow_s3_rules(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    let null = sample_object("null");
    s.meta
        .put_object("b", "k", &null, &Precondition::NONE)
        .await?;
    s.meta
        .set_bucket_config("b", BucketConfig::Versioning, Some("Enabled"))
        .await?;
    let v1 = sample_object("v1");
    let w = s
        .meta
        .put_object("b", "k", &v1, &Precondition::NONE)
        .await?;
    assert_eq!(
        w,
        Written {
            replaced: vec![],
            version_id: Some("version-v1".into())
        },
        "an enabled bucket keeps what a put supersedes and reports the new version id"
    );
    let Some(current) = s.meta.object("b", "k").await? else {
        panic!("a put in an enabled bucket leaves a current object");
    };
    assert!(current.versioned && current.version_id == "version-v1");
    assert_eq!(
        s.meta
            .object_version("b", "k", Some("null"))
            .await?
            .map(|r| r.etag),
        Some("etag-null".into()),
        "the object from before versioning is the null version"
    );
    assert_eq!(
        history(&s, "b").await?,
        [
            entry("k", "version-v1", true, false),
            entry("k", "null", false, false)
        ]
    );
    let d = s.meta.delete_object("b", "k", &DELETE).await?;
    assert_eq!(
        d,
        Deleted {
            removed: vec![],
            delete_marker: true,
            version_id: Some("marker".into())
        },
        "a delete without a version id in an enabled bucket makes a delete marker"
    );
    assert_eq!(
        s.meta.object("b", "k").await?,
        None,
        "a marker hides the key"
    );
    assert!(
        s.meta
            .object_version("b", "k", None)
            .await?
            .is_some_and(|r| r.delete_marker),
        "the latest version is the marker"
    );
    assert_eq!(
        history(&s, "b").await?,
        [
            entry("k", "marker", true, true),
            entry("k", "version-v1", false, false),
            entry("k", "null", false, false)
        ]
    );
    let blobs = s.meta.referenced_blobs().await?;
    assert!(
        blobs.contains("blob-v1") && blobs.contains("blob-null"),
        "older versions' blobs stay referenced"
    );
    expect_err(
        s.meta
            .update_object("b", "k", None, &ObjectUpdate::Tags(BTreeMap::new()))
            .await,
        MetaError::DeleteMarker,
        "tagging a delete marker",
    );
    let d = s
        .meta
        .delete_object("b", "k", &delete_version("marker"))
        .await?;
    assert!(d.delete_marker && d.version_id.as_deref() == Some("marker"));
    assert_eq!(
        s.meta.object("b", "k").await?.map(|r| r.version_id),
        Some("version-v1".into()),
        "removing the marker makes the newest version current again"
    );
    let d = s
        .meta
        .delete_object("b", "k", &delete_version("version-v1"))
        .await?;
    assert_eq!(
        d.removed,
        vec![current],
        "a removed version comes back for its blobs"
    );
    assert_eq!(
        s.meta.object("b", "k").await?.map(|r| r.etag),
        Some("etag-null".into()),
        "removing the current version promotes the next newest"
    );
    let d = s
        .meta
        .delete_object("b", "k", &delete_version("no-such-version"))
        .await?;
    assert!(
        d.removed.is_empty(),
        "deleting an absent version is a no-op"
    );
    let tags = BTreeMap::from([("team".to_owned(), "blue".to_owned())]);
    let tagged = s
        .meta
        .update_object("b", "k", Some("null"), &ObjectUpdate::Tags(tags.clone()))
        .await?;
    assert_eq!(tagged.tags, tags);
    assert_eq!(
        s.meta.object("b", "k").await?.map(|r| r.tags),
        Some(tags),
        "tags are stored on the version"
    );
    expect_err(
        s.meta
            .update_object("b", "k", Some("gone"), &ObjectUpdate::LegalHold(true))
            .await,
        MetaError::NoSuchKey,
        "updating an absent version",
    );
    s.meta.delete_object("b", "k", &DELETE).await?;
    assert!(s.meta.object("b", "k").await?.is_none());
    expect_err(
        s.meta.delete_bucket("b").await,
        MetaError::BucketNotEmpty,
        "a bucket holding only older versions and markers is not empty",
    );
    Ok(())
}

async fn suspended_versioning_replaces_the_null_version(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    s.meta
        .set_bucket_config("b", BucketConfig::Versioning, Some("Enabled"))
        .await?;
    s.meta
        .put_object("b", "k", &sample_object("v1"), &Precondition::NONE)
        .await?;
    s.meta
        .set_bucket_config("b", BucketConfig::Versioning, Some("Suspended"))
        .await?;
    let first_null = sample_object("n1");
    let w = s
        .meta
        .put_object("b", "k", &first_null, &Precondition::NONE)
        .await?;
    assert_eq!(
        (w.replaced.len(), w.version_id.as_deref()),
        (0, Some("null")),
        "a suspended put keeps the versioned object and writes the null version"
    );
    let w = s
        .meta
        .put_object("b", "k", &sample_object("n2"), &Precondition::NONE)
        .await?;
    let mut expected_null = first_null;
    expected_null.versioned = false;
    assert_eq!(
        w.replaced,
        vec![expected_null],
        "a second suspended put replaces the null version"
    );
    assert_eq!(
        history(&s, "b").await?,
        [
            entry("k", "null", true, false),
            entry("k", "version-v1", false, false)
        ]
    );
    let d = s.meta.delete_object("b", "k", &DELETE).await?;
    assert_eq!(
        (d.removed.len(), d.delete_marker, d.version_id.as_deref()),
        (1, true, Some("null")),
        "a suspended delete replaces the null version with a null marker"
    );
    assert_eq!(
        history(&s, "b").await?,
        [
            entry("k", "null", true, true),
            entry("k", "version-v1", false, false)
        ]
    );
    s.meta
        .put_object("b", "k", &sample_object("n3"), &Precondition::NONE)
        .await?;
    assert_eq!(
        history(&s, "b").await?,
        [
            entry("k", "null", true, false),
            entry("k", "version-v1", false, false)
        ],
        "a put replaces a null delete marker too"
    );
    Ok(())
}

async fn object_lock_refuses_removal(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    s.meta
        .set_bucket_config("b", BucketConfig::Versioning, Some("Enabled"))
        .await?;
    let now = 1_000;
    let retain = |mode, until, bypass| ObjectUpdate::Retention {
        retention: Some(Retention { mode, until }),
        bypass_governance: bypass,
        now,
    };
    for tag in ["c", "g", "h"] {
        s.meta
            .put_object("b", tag, &sample_object(tag), &Precondition::NONE)
            .await?;
    }
    let at = |id| DeleteRequest {
        version_id: Some(id),
        now,
        ..DELETE
    };
    // COMPLIANCE: nobody removes it or weakens it before the date.
    s.meta
        .update_object(
            "b",
            "c",
            None,
            &retain(RetentionMode::Compliance, 5_000, false),
        )
        .await?;
    expect_err(
        s.meta
            .delete_object(
                "b",
                "c",
                &DeleteRequest {
                    bypass_governance: true,
                    ..at("version-c")
                },
            )
            .await,
        MetaError::ObjectLocked("the object version is under COMPLIANCE retention".into()),
        "deleting a COMPLIANCE version, even with the bypass",
    );
    expect_err(
        s.meta
            .update_object(
                "b",
                "c",
                None,
                &retain(RetentionMode::Compliance, 4_000, true),
            )
            .await,
        MetaError::ObjectLocked("COMPLIANCE retention can only be extended".into()),
        "shortening COMPLIANCE retention",
    );
    expect_err(
        s.meta
            .update_object(
                "b",
                "c",
                None,
                &retain(RetentionMode::Governance, 9_000, true),
            )
            .await,
        MetaError::ObjectLocked("COMPLIANCE retention can only be extended".into()),
        "turning COMPLIANCE into GOVERNANCE",
    );
    s.meta
        .update_object(
            "b",
            "c",
            None,
            &retain(RetentionMode::Compliance, 6_000, false),
        )
        .await?;
    let d = s
        .meta
        .delete_object("b", "c", &DeleteRequest { now, ..DELETE })
        .await?;
    assert!(
        d.delete_marker && d.removed.is_empty(),
        "a delete marker over a locked version is allowed (it removes nothing)"
    );
    assert!(
        s.meta
            .object_version("b", "c", Some("version-c"))
            .await?
            .is_some(),
        "the locked version is still there"
    );
    let later = DeleteRequest {
        version_id: Some("version-c"),
        now: 6_001,
        ..DELETE
    };
    assert_eq!(
        s.meta.delete_object("b", "c", &later).await?.removed.len(),
        1,
        "after the date the version can be removed"
    );
    // GOVERNANCE: only with the bypass.
    s.meta
        .update_object(
            "b",
            "g",
            None,
            &retain(RetentionMode::Governance, 5_000, false),
        )
        .await?;
    expect_err(
        s.meta.delete_object("b", "g", &at("version-g")).await,
        MetaError::ObjectLocked("the object version is under GOVERNANCE retention".into()),
        "deleting a GOVERNANCE version without the bypass",
    );
    expect_err(
        s.meta
            .update_object(
                "b",
                "g",
                None,
                &retain(RetentionMode::Governance, 2_000, false),
            )
            .await,
        MetaError::ObjectLocked(
            "shortening or removing GOVERNANCE retention needs the bypass".into(),
        ),
        "shortening GOVERNANCE retention without the bypass",
    );
    let bypass = DeleteRequest {
        bypass_governance: true,
        ..at("version-g")
    };
    assert_eq!(
        s.meta.delete_object("b", "g", &bypass).await?.removed.len(),
        1,
        "the bypass removes a GOVERNANCE version"
    );
    // Legal hold: no removal while on, whatever the retention.
    s.meta
        .update_object("b", "h", None, &ObjectUpdate::LegalHold(true))
        .await?;
    expect_err(
        s.meta
            .delete_object("b", "h", &bypass_for("version-h"))
            .await,
        MetaError::ObjectLocked("the object version is under a legal hold".into()),
        "deleting a held version",
    );
    s.meta
        .update_object("b", "h", None, &ObjectUpdate::LegalHold(false))
        .await?;
    assert_eq!(
        s.meta
            .delete_object("b", "h", &bypass_for("version-h"))
            .await?
            .removed
            .len(),
        1,
        "a released hold allows removal"
    );
    Ok(())
}

fn bypass_for(version_id: &str) -> DeleteRequest<'_> {
    DeleteRequest {
        version_id: Some(version_id),
        now: 1_000,
        bypass_governance: true,
        ..DELETE
    }
}

async fn version_listing_pages(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    s.meta
        .set_bucket_config("b", BucketConfig::Versioning, Some("Enabled"))
        .await?;
    for (key, tag) in [
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("a", "a3"),
        ("c", "c1"),
    ] {
        s.meta
            .put_object("b", key, &sample_object(tag), &Precondition::NONE)
            .await?;
    }
    s.meta
        .delete_object(
            "b",
            "b",
            &DeleteRequest {
                marker_version: "mb",
                ..DELETE
            },
        )
        .await?;
    let ids = |page: Vec<crate::meta::VersionEntry>| {
        page.into_iter()
            .map(|e| (e.key, e.record.s3_version_id().to_owned()))
            .collect::<Vec<_>>()
    };
    let all = ids(s.meta.list_versions("b", "", "", "", 1000).await?);
    let expect = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), format!("version-{v}")))
            .collect::<Vec<_>>()
    };
    let mut want = expect(&[("a", "a3"), ("a", "a2"), ("a", "a1")]);
    want.push(("b".into(), "mb".into()));
    want.extend(expect(&[("b", "b1"), ("c", "c1")]));
    assert_eq!(all, want, "by key, each key newest first");
    // Walk in pages of two, resuming after each page's last (key, version).
    let mut walked = Vec::new();
    let (mut key, mut version) = (String::new(), String::new());
    loop {
        let page = ids(s.meta.list_versions("b", "", &key, &version, 2).await?);
        let n = page.len();
        if let Some((k, v)) = page.last() {
            (key, version) = (k.clone(), v.clone());
        }
        walked.extend(page);
        if n < 2 {
            break;
        }
    }
    assert_eq!(
        walked, want,
        "pages of two resume exactly after their marker"
    );
    assert_eq!(
        ids(s.meta.list_versions("b", "", "a", "", 1000).await?),
        want[3..].to_vec(),
        "a key marker alone starts after that key"
    );
    assert_eq!(
        ids(s.meta.list_versions("b", "b", "", "", 1000).await?),
        want[3..5].to_vec(),
        "a prefix limits the keys"
    );
    Ok(())
}

async fn metadata_survives_reopen(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    let enc = BucketEncryption {
        algorithm: "AES256".into(),
        kms_key_id: None,
        bucket_key_enabled: false,
    };
    s.meta.create_bucket("b", 7, "alice").await?;
    s.meta.set_bucket_encryption("b", Some(&enc)).await?;
    s.meta
        .put_object("b", "k", &sample_object("k"), &Precondition::NONE)
        .await?;
    s.meta.create_upload("u", &sample_upload("b", "m")).await?;
    s.meta.put_part("u", 3, &sample_part("p3", 3)).await?;
    s.meta
        .set_bucket_config("b", BucketConfig::Versioning, Some("Enabled"))
        .await?;
    s.meta
        .put_object("b", "k", &sample_object("k2"), &Precondition::NONE)
        .await?;
    let versions = s.meta.list_versions("b", "", "", "", 10).await?;
    drop(s);
    let Some(s) = h.reopen() else {
        return Ok(());
    };
    assert_eq!(
        s.meta.list_buckets().await?.first().map(|b| b.created),
        Some(7),
        "buckets survive a reopen"
    );
    assert_eq!(
        s.meta.bucket_encryption("b").await?,
        Some(enc),
        "bucket encryption survives a reopen"
    );
    assert_eq!(
        s.meta.object_version("b", "k", Some("null")).await?,
        Some(sample_object("k")),
        "objects survive a reopen"
    );
    assert_eq!(
        s.meta.list_versions("b", "", "", "", 10).await?,
        versions,
        "versions and versioning survive a reopen"
    );
    assert_eq!(
        s.meta
            .bucket_config("b", BucketConfig::Versioning)
            .await?
            .as_deref(),
        Some("Enabled")
    );
    assert_eq!(
        s.meta.upload("u").await?,
        Some(sample_upload("b", "m")),
        "uploads survive a reopen"
    );
    assert_eq!(
        s.meta.list_parts("u").await?.get(&3),
        Some(&sample_part("p3", 3)),
        "parts survive a reopen"
    );
    assert_eq!(
        s.identity
            .snapshot()
            .await?
            .bucket_owners
            .get("b")
            .map(String::as_str),
        Some("alice"),
        "owners survive a reopen"
    );
    Ok(())
}

async fn stored_records_carry_the_version_marker(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.meta.create_bucket("b", 1, "root").await?;
    let enc = BucketEncryption {
        algorithm: "AES256".into(),
        kms_key_id: None,
        bucket_key_enabled: false,
    };
    s.meta.set_bucket_encryption("b", Some(&enc)).await?;
    s.meta
        .put_object("b", "k", &sample_object("k"), &Precondition::NONE)
        .await?;
    s.meta.create_upload("u", &sample_upload("b", "k")).await?;
    s.meta.put_part("u", 1, &sample_part("p", 1)).await?;
    let stored = h.stored_records();
    assert_eq!(
        stored.len(),
        4,
        "one stored record each: encryption, object, upload, part"
    );
    for record in &stored {
        assert_eq!(
            stored_version(record),
            Some(u64::from(RECORD_VERSION)),
            "every stored record carries \"v\": {RECORD_VERSION}"
        );
    }
    Ok(())
}

// ---- IdentityStore ----

async fn identities_are_unique_and_updatable(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    assert!(
        s.identity.snapshot().await?.identities.is_empty(),
        "a fresh store has no identities"
    );
    s.identity
        .create_identity(&identity("bob", "service"))
        .await?;
    s.identity
        .create_identity(&identity("alice", "user"))
        .await?;
    expect_err(
        s.identity
            .create_identity(&identity("alice", "service"))
            .await,
        MetaError::AlreadyExists("identity alice".into()),
        "a taken identity name",
    );
    let snap = s.identity.snapshot().await?;
    assert_eq!(
        snap.identities.values().cloned().collect::<Vec<_>>(),
        [identity("alice", "user"), identity("bob", "service")],
        "identities read back by name, unchanged by the refused duplicate"
    );
    s.identity.set_identity_enabled("alice", false).await?;
    assert!(
        !s.identity.snapshot().await?.identities["alice"].enabled,
        "disabling is visible"
    );
    s.identity.set_identity_enabled("alice", true).await?;
    assert!(
        s.identity.snapshot().await?.identities["alice"].enabled,
        "enabling is visible"
    );
    expect_err(
        s.identity.set_identity_enabled("ghost", true).await,
        MetaError::NoSuchIdentity("ghost".into()),
        "enabling an absent identity",
    );
    Ok(())
}

async fn access_keys_are_unique_and_belong_to_their_identity(
    h: &mut dyn Harness,
) -> MetaResult<()> {
    let s = h.fresh();
    expect_err(
        s.identity
            .put_access_key(&access_key("AK1", "alice", "s1"))
            .await,
        MetaError::NoSuchIdentity("alice".into()),
        "a key for an absent identity",
    );
    s.identity
        .create_identity(&identity("alice", "user"))
        .await?;
    s.identity.create_identity(&identity("bob", "user")).await?;
    s.identity
        .put_access_key(&access_key("AK1", "alice", "secret-1"))
        .await?;
    s.identity
        .put_access_key(&access_key("AK0", "alice", "secret-0"))
        .await?;
    expect_err(
        s.identity
            .put_access_key(&access_key("AK1", "bob", "other"))
            .await,
        MetaError::AlreadyExists("access key AK1".into()),
        "an access key id taken by another identity",
    );
    let snap = s.identity.snapshot().await?;
    let listed: Vec<_> = snap
        .access_keys
        .values()
        .map(|k| {
            (
                k.access_key.as_str(),
                k.identity.as_str(),
                k.secret.expose(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("AK0", "alice", "secret-0"), ("AK1", "alice", "secret-1")],
        "keys read back with their secrets, unchanged by the refused duplicate"
    );
    expect_err(
        s.identity.delete_access_key("bob", "AK1").await,
        MetaError::NoSuchAccessKey,
        "deleting another identity's key",
    );
    s.identity.delete_access_key("alice", "AK1").await?;
    let snap = s.identity.snapshot().await?;
    assert_eq!(
        snap.access_keys.keys().collect::<Vec<_>>(),
        ["AK0"],
        "a deleted key is gone, the other kept"
    );
    expect_err(
        s.identity.delete_access_key("alice", "AK1").await,
        MetaError::NoSuchAccessKey,
        "deleting a key twice",
    );
    Ok(())
}

async fn rotation_replaces_a_key_in_one_step(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.identity
        .create_identity(&identity("alice", "user"))
        .await?;
    s.identity.create_identity(&identity("bob", "user")).await?;
    s.identity
        .put_access_key(&access_key("OLD", "alice", "old-secret"))
        .await?;
    s.identity
        .put_access_key(&access_key("BOBS", "bob", "bob-secret"))
        .await?;
    expect_err(
        s.identity
            .replace_access_key("MISSING", &access_key("NEW", "alice", "n"))
            .await,
        MetaError::NoSuchAccessKey,
        "rotating an absent key",
    );
    expect_err(
        s.identity
            .replace_access_key("BOBS", &access_key("NEW", "alice", "n"))
            .await,
        MetaError::NoSuchAccessKey,
        "rotating another identity's key",
    );
    expect_err(
        s.identity
            .replace_access_key("OLD", &access_key("BOBS", "alice", "n"))
            .await,
        MetaError::AlreadyExists("access key BOBS".into()),
        "rotating to a taken id",
    );
    let snap = s.identity.snapshot().await?;
    assert!(
        snap.access_keys.contains_key("OLD") && !snap.access_keys.contains_key("NEW"),
        "a refused rotation keeps the old key and adds nothing"
    );
    assert_eq!(
        snap.access_keys["BOBS"].identity, "bob",
        "a refused rotation leaves the other identity's key"
    );
    s.identity
        .replace_access_key("OLD", &access_key("NEW", "alice", "new-secret"))
        .await?;
    let snap = s.identity.snapshot().await?;
    assert!(
        !snap.access_keys.contains_key("OLD"),
        "rotation removes the old key"
    );
    assert_eq!(
        snap.access_keys
            .get("NEW")
            .map(|k| (k.identity.as_str(), k.secret.expose())),
        Some(("alice", "new-secret")),
        "rotation adds the new key"
    );
    Ok(())
}

async fn identity_policies_follow_their_identity(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    expect_err(
        s.identity.put_identity_policy("ghost", "p", "{}").await,
        MetaError::NoSuchIdentity("ghost".into()),
        "a policy for an absent identity",
    );
    s.identity
        .create_identity(&identity("alice", "user"))
        .await?;
    s.identity
        .put_identity_policy("alice", "read", "{1}")
        .await?;
    s.identity
        .put_identity_policy("alice", "admin", "{2}")
        .await?;
    s.identity
        .put_identity_policy("alice", "read", "{3}")
        .await?;
    let snap = s.identity.snapshot().await?;
    assert_eq!(
        snap.identity_policies
            .iter()
            .map(|((who, name), doc)| (who.as_str(), name.as_str(), doc.as_str()))
            .collect::<Vec<_>>(),
        [("alice", "admin", "{2}"), ("alice", "read", "{3}")],
        "policies are by (identity, name); putting a name again replaces it"
    );
    expect_err(
        s.identity.delete_identity_policy("alice", "nope").await,
        MetaError::NoSuchPolicy,
        "deleting an absent policy",
    );
    s.identity.delete_identity_policy("alice", "read").await?;
    assert_eq!(
        s.identity
            .snapshot()
            .await?
            .identity_policies
            .keys()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>(),
        ["admin"],
        "a deleted policy is gone, the other kept"
    );
    Ok(())
}

async fn bucket_policies_follow_their_bucket(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    expect_err(
        s.identity.put_bucket_policy("nope", "{}").await,
        MetaError::NoSuchBucket,
        "a policy for an absent bucket",
    );
    s.meta.create_bucket("b", 1, "root").await?;
    s.identity.put_bucket_policy("b", "{1}").await?;
    s.identity.put_bucket_policy("b", "{2}").await?;
    assert_eq!(
        s.identity
            .snapshot()
            .await?
            .bucket_policies
            .get("b")
            .map(String::as_str),
        Some("{2}"),
        "putting a bucket policy again replaces it"
    );
    s.identity.delete_bucket_policy("b").await?;
    assert!(
        s.identity.snapshot().await?.bucket_policies.is_empty(),
        "a deleted bucket policy is gone"
    );
    s.identity.delete_bucket_policy("b").await?;
    s.identity.delete_bucket_policy("nope").await?;
    Ok(())
}

async fn deleting_an_identity_takes_its_keys_and_policies(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    expect_err(
        s.identity.delete_identity("ghost").await,
        MetaError::NoSuchIdentity("ghost".into()),
        "deleting an absent identity",
    );
    for name in ["alice", "bob"] {
        s.identity.create_identity(&identity(name, "user")).await?;
        s.identity
            .put_access_key(&access_key(&format!("AK-{name}"), name, "s"))
            .await?;
        s.identity.put_identity_policy(name, "p", "{}").await?;
    }
    s.meta.create_bucket("alices", 1, "alice").await?;
    expect_err(
        s.identity.delete_identity("alice").await,
        MetaError::IdentityOwnsBucket {
            bucket: "alices".into(),
        },
        "deleting an identity that owns a bucket",
    );
    let snap = s.identity.snapshot().await?;
    assert!(
        snap.identities.contains_key("alice")
            && snap.access_keys.contains_key("AK-alice")
            && snap
                .identity_policies
                .contains_key(&("alice".into(), "p".into())),
        "a refused delete keeps the identity, its keys and policies"
    );
    s.meta.delete_bucket("alices").await?;
    s.identity.delete_identity("alice").await?;
    let snap = s.identity.snapshot().await?;
    assert_eq!(
        snap.identities.keys().collect::<Vec<_>>(),
        ["bob"],
        "the identity is gone"
    );
    assert_eq!(
        snap.access_keys.keys().collect::<Vec<_>>(),
        ["AK-bob"],
        "its keys are gone, others kept"
    );
    assert_eq!(
        snap.identity_policies
            .keys()
            .map(|(who, _)| who.as_str())
            .collect::<Vec<_>>(),
        ["bob"],
        "its policies are gone, others kept"
    );
    Ok(())
}

async fn identities_survive_reopen(h: &mut dyn Harness) -> MetaResult<()> {
    let s = h.fresh();
    s.identity
        .create_identity(&identity("alice", "user"))
        .await?;
    s.identity.set_identity_enabled("alice", false).await?;
    s.identity
        .put_access_key(&access_key("AK", "alice", "kept-secret"))
        .await?;
    s.identity
        .put_identity_policy("alice", "p", "{doc}")
        .await?;
    s.meta.create_bucket("b", 1, "alice").await?;
    s.identity.put_bucket_policy("b", "{bucket}").await?;
    drop(s);
    let Some(s) = h.reopen() else {
        return Ok(());
    };
    let snap = s.identity.snapshot().await?;
    assert_eq!(
        snap.identities.get("alice"),
        Some(&IdentityRecord {
            enabled: false,
            ..identity("alice", "user")
        }),
        "identities survive a reopen"
    );
    assert_eq!(
        snap.access_keys.get("AK").map(|k| k.secret.expose()),
        Some("kept-secret"),
        "access keys survive a reopen"
    );
    assert_eq!(
        snap.identity_policies
            .get(&("alice".into(), "p".into()))
            .map(String::as_str),
        Some("{doc}"),
        "identity policies survive a reopen"
    );
    assert_eq!(
        snap.bucket_policies.get("b").map(String::as_str),
        Some("{bucket}"),
        "bucket policies survive a reopen"
    );
    Ok(())
}
