//! The encrypted-blob layer's contract, as one suite every `object_store` backend must pass
//! (the local disk and in-memory stores here; the gateway's S3, Azure and GCS stores next):
//!
//! - **Round trip, every range.** A body written in uneven pieces reads back byte for byte,
//!   whole and in any range (chunk boundaries, single bytes, the last byte, empty), from a
//!   blob small enough to be read in one request and from one large enough to be written in
//!   several backend parts and read by range requests. The reported lengths and MD5 are the
//!   body's; the stored object is exactly `blob_len` bytes.
//! - **A failed write leaves nothing.** A body that errors part way, or grows past the size
//!   limit, is refused and no object is left in the store.
//! - **Damage is an error, never other bytes.** A flipped ciphertext byte, an appended byte,
//!   a truncated blob, a missing blob, or opening under another context (another object's
//!   name) is an integrity error; nothing decrypted from a damaged chunk is returned.
//! - **Delete removes** the blob.
//! - **Garbage collection** keeps young, referenced and foreign objects (see
//!   [`BlobStore::collect_garbage`]).
//!
//! Each check panics with what broke; [`run`] runs them all on one backend.

// Test support: a broken contract is a panic naming it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use s3s::checksum::ChecksumHasher;
use s3s::StdError;

use super::{blob_path, BlobStore, CHUNK_SIZE, SMALL_BLOB};
use crate::sse::{self, Keys};
use coffer_format::Metadata;
use coffer_meta::{Segment, SseRecord};
use coffer_outcome::ServerError;

const CHUNK: usize = CHUNK_SIZE;

/// Runs every check on `store` (which must be empty), with `keys` for SSE-S3 data keys.
/// Needs a multi-threaded tokio runtime (the blob layer encrypts in `block_in_place`).
pub async fn run(store: Arc<dyn ObjectStore>, keys: &Keys) {
    let blobs = BlobStore::new(Arc::clone(&store));
    round_trip_every_range(&blobs, &*store, keys, 3 * CHUNK + 7).await;
    round_trip_every_range(&blobs, &*store, keys, 0).await;
    // Larger than one read request and than one backend part.
    round_trip_every_range(&blobs, &*store, keys, SMALL_BLOB as usize + 5 * CHUNK + 1).await;
    a_failed_write_leaves_nothing(&blobs, &*store, keys).await;
    damage_is_an_error(&blobs, &*store, keys).await;
    delete_removes_the_blob(&blobs, &*store, keys).await;
    garbage_collection_keeps_young_referenced_and_foreign_objects(&blobs, &*store).await;
}

fn body_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// The body as a stream of uneven pieces (1 byte, then growing), as a client sends it.
fn pieces(body: &[u8]) -> impl futures::Stream<Item = Result<Bytes, StdError>> + Unpin {
    let mut out = Vec::new();
    let (mut at, mut n) = (0, 1);
    while at < body.len() {
        let end = (at + n).min(body.len());
        out.push(Ok(Bytes::copy_from_slice(&body[at..end])));
        at = end;
        n = n * 3 + 1;
    }
    futures::stream::iter(out)
}

fn context(key: &str) -> coffer_format::Context {
    sse::blob_context("bucket", key, "v1", 1).expect("context")
}

async fn write(
    blobs: &BlobStore,
    keys: &Keys,
    key: &str,
    body: impl futures::Stream<Item = Result<Bytes, StdError>> + Unpin,
    max_len: u64,
) -> Result<Segment, ServerError> {
    let ctx = context(key);
    let bk = keys
        .new_blob_key(&SseRecord::S3, None, None, &ctx)
        .await
        .expect("data key");
    let w = blobs
        .write(
            body,
            bk,
            &ctx,
            &Metadata::new(),
            ChecksumHasher::default(),
            max_len,
            Duration::from_secs(30),
        )
        .await?;
    Ok(Segment {
        blob: w.name,
        version: "v1".into(),
        part_number: 1,
        plain_len: w.plain_len,
        blob_len: w.blob_len,
        header_len: w.header_len,
        etag: hex::encode(w.md5),
    })
}

/// Opens `seg` as object `key` and reads `range`; any error is returned.
async fn read(
    blobs: &BlobStore,
    keys: &Keys,
    key: &str,
    seg: &Segment,
    mut range: Range<u64>,
) -> Result<Vec<u8>, ServerError> {
    let blob = blobs
        .open(seg, keys, &SseRecord::S3, None, None, &context(key))
        .await?;
    let mut out = Vec::new();
    while let Some(data) = blobs.next_window(&blob, &mut range).await? {
        out.extend_from_slice(&data);
    }
    Ok(out)
}

async fn object_count(store: &dyn ObjectStore) -> usize {
    use futures::StreamExt;
    store.list(None).count().await
}

fn integrity<T: std::fmt::Debug>(what: &str, r: Result<T, ServerError>) {
    assert!(
        matches!(r, Err(ServerError::Integrity(_))),
        "{what}: expected an integrity error, got {r:?}"
    );
}

pub async fn round_trip_every_range(
    blobs: &BlobStore,
    store: &dyn ObjectStore,
    keys: &Keys,
    len: usize,
) {
    let body = body_of(len);
    let seg = write(blobs, keys, "k", pieces(&body), u64::MAX)
        .await
        .expect("write");
    assert_eq!(seg.plain_len, len as u64, "plain_len");
    let md5: [u8; 16] = <md5::Md5 as md5::Digest>::digest(&body).into();
    assert_eq!(seg.etag, hex::encode(md5), "MD5 of the body");
    let stored = store
        .head(&blob_path(&seg.blob))
        .await
        .expect("the blob is in the store");
    assert_eq!(stored.size, seg.blob_len, "stored size is blob_len");
    assert!(
        seg.blob_len > seg.plain_len,
        "ciphertext carries header and tags"
    );

    let n = len as u64;
    let c = CHUNK as u64;
    let mut ranges = vec![0..n, 0..0, n..n];
    if n > 0 {
        ranges.extend([0..1, n - 1..n, n / 2..n / 2 + 1]);
    }
    if n > 2 * c {
        ranges.extend([c - 1..c + 1, c..2 * c, 1..n - 1, c + 3..n]);
    }
    for r in ranges {
        let got = read(blobs, keys, "k", &seg, r.clone())
            .await
            .unwrap_or_else(|e| panic!("read {r:?} of {n}: {e}"));
        assert!(
            got == body[r.start as usize..r.end as usize],
            "range {r:?} of {n} bytes reads back different bytes"
        );
    }
    blobs.delete(&seg.blob).await;
}

pub async fn a_failed_write_leaves_nothing(
    blobs: &BlobStore,
    store: &dyn ObjectStore,
    keys: &Keys,
) {
    let before = object_count(store).await;
    // A client that goes away after 2.5 chunks (and after a full backend part is possible).
    let body = body_of(SMALL_BLOB as usize + CHUNK);
    let cut: Vec<Result<Bytes, StdError>> = vec![
        Ok(Bytes::copy_from_slice(&body[..SMALL_BLOB as usize])),
        Ok(Bytes::copy_from_slice(&body[SMALL_BLOB as usize..])),
        Err("connection reset".into()),
    ];
    let r = write(blobs, keys, "k", futures::stream::iter(cut), u64::MAX).await;
    assert!(r.is_err(), "a body that fails is refused: {r:?}");
    assert_eq!(
        object_count(store).await,
        before,
        "a failed body left an object"
    );

    let r = write(blobs, keys, "k", pieces(&body_of(CHUNK + 1)), CHUNK as u64).await;
    assert!(
        matches!(
            &r,
            Err(ServerError::S3(s3s::S3ErrorCode::EntityTooLarge, _))
        ),
        "a body over the limit is EntityTooLarge: {r:?}"
    );
    assert_eq!(
        object_count(store).await,
        before,
        "an oversized body left an object"
    );
}

pub async fn damage_is_an_error(blobs: &BlobStore, store: &dyn ObjectStore, keys: &Keys) {
    let body = body_of(3 * CHUNK);
    let seg = write(blobs, keys, "k", pieces(&body), u64::MAX)
        .await
        .expect("write");
    let path = blob_path(&seg.blob);
    let original = store
        .get(&path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let put = |bytes: Vec<u8>| {
        let path = path.clone();
        async move {
            store
                .put(&path, PutPayload::from(bytes))
                .await
                .expect("rewrite the blob");
        }
    };
    let n = body.len() as u64;

    // Another object's name: the context is bound into the key commitment and every tag.
    integrity(
        "opened as another object",
        read(blobs, keys, "other", &seg, 0..n).await.map(|_| ()),
    );

    // One flipped byte in the middle of the second chunk's ciphertext.
    let mut flipped = original.to_vec();
    let second = coffer_format::range::ObjectLayout::new(seg.header_len, seg.blob_len)
        .expect("layout")
        .chunk_span(1, 1);
    let at = ((second.start + second.end) / 2) as usize;
    flipped[at] ^= 0x01;
    put(flipped).await;
    integrity(
        "flipped byte",
        read(blobs, keys, "k", &seg, 0..n).await.map(|_| ()),
    );
    // The first chunk is undamaged and still reads; the damaged one never does.
    let first = read(blobs, keys, "k", &seg, 0..CHUNK as u64).await;
    assert!(
        matches!(first.as_deref(), Ok(b) if b == &body[..CHUNK]),
        "the undamaged first chunk reads back"
    );
    integrity(
        "range over the flipped byte",
        read(blobs, keys, "k", &seg, CHUNK as u64..CHUNK as u64 + 1)
            .await
            .map(|_| ()),
    );

    let mut appended = original.to_vec();
    appended.push(0);
    put(appended).await;
    integrity(
        "appended byte",
        read(blobs, keys, "k", &seg, 0..1).await.map(|_| ()),
    );

    put(original[..original.len() - 1].to_vec()).await;
    integrity(
        "truncated blob",
        read(blobs, keys, "k", &seg, 0..1).await.map(|_| ()),
    );

    store.delete(&path).await.expect("delete");
    integrity(
        "missing blob",
        read(blobs, keys, "k", &seg, 0..1).await.map(|_| ()),
    );
}

pub async fn delete_removes_the_blob(blobs: &BlobStore, store: &dyn ObjectStore, keys: &Keys) {
    let seg = write(blobs, keys, "k", pieces(b"gone"), u64::MAX)
        .await
        .expect("write");
    assert!(store.head(&blob_path(&seg.blob)).await.is_ok());
    blobs.delete(&seg.blob).await;
    assert!(
        store.head(&blob_path(&seg.blob)).await.is_err(),
        "the blob is still there after delete"
    );
}

async fn put_raw(store: &dyn ObjectStore, path: &str) {
    store
        .put(&Path::from(path), PutPayload::from_static(b"ciphertext"))
        .await
        .expect("put");
}

async fn exists(store: &dyn ObjectStore, path: &str) -> bool {
    store.head(&Path::from(path)).await.is_ok()
}

/// A young unreferenced blob survives (another writer may be about to commit it), an old
/// one goes; referenced blobs, blobs committed while the collector was listing, and objects
/// that are not blobs are never deleted; a failure to read the references deletes nothing.
pub async fn garbage_collection_keeps_young_referenced_and_foreign_objects(
    blobs: &BlobStore,
    store: &dyn ObjectStore,
) {
    let [kept, orphan, late] = [0, 1, 2].map(|_| BlobStore::new_name());
    for name in [&kept, &orphan, &late] {
        put_raw(store, blob_path(name).as_ref()).await;
    }
    // Not blob names, or not where a blob would be: never Coffer's garbage.
    put_raw(store, "notes.txt").await;
    let misplaced = format!("zz/{}", orphan.replace('0', "1"));
    put_raw(store, &misplaced).await;

    let refs = || async { Ok(HashSet::from([kept.clone()])) };
    let hour = Duration::from_secs(3600);
    assert_eq!(blobs.collect_garbage(refs, hour).await.expect("gc"), 0);
    assert!(exists(store, blob_path(&orphan).as_ref()).await, "young");

    tokio::time::sleep(Duration::from_millis(20)).await;
    // `late` is committed after the listing, before the references are read.
    let refs = || async { Ok(HashSet::from([kept.clone(), late.clone()])) };
    assert_eq!(
        blobs
            .collect_garbage(refs, Duration::ZERO)
            .await
            .expect("gc"),
        1
    );
    assert!(
        !exists(store, blob_path(&orphan).as_ref()).await,
        "old orphan deleted"
    );
    assert!(exists(store, blob_path(&kept).as_ref()).await);
    assert!(exists(store, blob_path(&late).as_ref()).await);
    assert!(exists(store, "notes.txt").await);
    assert!(exists(store, &misplaced).await);

    let refs = || async { Err(ServerError::Internal("metadata unavailable".into())) };
    assert!(blobs.collect_garbage(refs, Duration::ZERO).await.is_err());
    assert!(exists(store, blob_path(&kept).as_ref()).await);
}
