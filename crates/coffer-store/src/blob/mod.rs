//! Encrypted blobs on an `object_store` backend: streaming writes that become visible only
//! when complete, and reads that decrypt only the chunks covering the requested range.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use coffer_format::chunked::{CHUNK_SIZE, PREFIX_LEN};
use coffer_format::object::ObjectEncryptor;
use coffer_format::range::{ObjectLayout, RangeDecryptor};
use coffer_format::{Context, Header, Metadata};
use coffer_kms::KeyUse;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use s3s::checksum::ChecksumHasher;
use s3s::StdError;
use tokio::sync::mpsc;

use crate::sse::{BlobKey, CustomerKey, Keys};
use coffer_meta::Segment;
use coffer_meta::SseRecord;
use coffer_outcome::{ServerError, ServerResult};

// Sizes bound the memory of one request (the server's RSS target is 64 MiB while it moves a
// 5 GiB object): a PUT holds about 3 batches + one part being filled + 2 parts in flight; a
// GET one window of ciphertext, one of plaintext and 2 queued for the client.
/// Plaintext gathered before one hash-and-encrypt step.
const BATCH: usize = 1 << 20;
/// Size of each backend multipart part, and the largest blob written with a single put.
const PART: usize = 4 << 20;
/// Chunks decrypted per read step (2 MiB of plaintext).
const READ_CHUNKS: u64 = 128;
/// Blobs up to this size are read with one request.
const SMALL_BLOB: u64 = 4 << 20;

pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
}

/// What writing a blob produced.
pub struct WrittenBlob {
    pub name: String,
    pub plain_len: u64,
    pub blob_len: u64,
    pub header_len: u64,
    pub md5: [u8; 16],
    pub checksums: s3s::dto::Checksum,
}

fn blob_path(name: &str) -> Path {
    Path::from(format!("{}/{}", &name[..2], name))
}

/// Runs CPU-heavy work without stalling the runtime's other tasks.
fn cpu<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl BlobStore {
    pub fn open_local(dir: &FsPath) -> ServerResult<BlobStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ServerError::Internal(format!("create {}: {e}", dir.display())))?;
        Ok(BlobStore::new(Arc::new(LocalFileSystem::new_with_prefix(
            dir,
        )?)))
    }

    /// Blobs on any `object_store` backend (the store's root is Coffer's: every object
    /// under it is a blob this layer wrote).
    pub fn new(store: Arc<dyn ObjectStore>) -> BlobStore {
        BlobStore { store }
    }

    /// Garbage collection: deletes the blobs no record references that were last modified
    /// more than `grace` ago. Returns how many it deleted.
    ///
    /// Safe beside writers that are still running, as long as `grace` is longer than the
    /// time between a blob's completion and the commit of the record naming it (a blob is
    /// written completely, then committed): the blobs are listed *before* the references
    /// are read, so a blob committed in between is either young (kept) or in `referenced`
    /// (kept). A blob still being written is not listed at all (object stores show an
    /// object only once its upload completes; the local store's staging files are not
    /// listed). Objects whose names are not blob names are never touched.
    pub async fn collect_garbage<F, Fut>(
        &self,
        referenced: F,
        grace: std::time::Duration,
    ) -> ServerResult<usize>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ServerResult<std::collections::HashSet<String>>>,
    {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(std::time::UNIX_EPOCH);
        let cutoff_ms = cutoff
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut old = Vec::new();
        let mut listing = self.store.list(None);
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let Some(name) = meta.location.filename().map(str::to_owned) else {
                continue;
            };
            if is_blob_name(&name)
                && blob_path(&name) == meta.location
                && meta.last_modified.timestamp_millis() < cutoff_ms
            {
                old.push(name);
            }
        }
        drop(listing);
        let referenced = referenced().await?;
        let mut deleted = 0;
        for name in old.iter().filter(|n| !referenced.contains(*n)) {
            match self.store.delete(&blob_path(name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }

    pub fn new_name() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Encrypts `body` into a new blob. Nothing is visible under the blob's name unless the
    /// whole body was read and written; on any error the staging data is removed.
    ///
    /// Two stages overlap: this task receives the body (TLS decryption happens here) and
    /// gathers batches; a worker task hashes (MD5 for the ETag, requested checksums) and
    /// encrypts each batch and writes it to the backend.
    #[allow(clippy::too_many_arguments)]
    pub async fn write<S>(
        &self,
        mut body: S,
        key: BlobKey,
        context: &Context,
        metadata: &Metadata,
        hasher: ChecksumHasher,
        max_len: u64,
        idle: std::time::Duration,
    ) -> ServerResult<WrittenBlob>
    where
        S: Stream<Item = Result<Bytes, StdError>> + Unpin,
    {
        let name = Self::new_name();
        let (enc, out) = ObjectEncryptor::new(&key.dek, &key.wrapped, context, metadata)?;
        drop(key);
        let header_len =
            coffer_format::header::header_len(&out[..coffer_format::header::FIXED_LEN])? as u64;
        let (tx, rx) = mpsc::channel::<Batch>(1);
        let worker = tokio::spawn(write_worker(
            Arc::clone(&self.store),
            blob_path(&name),
            enc,
            out,
            hasher,
            rx,
        ));
        let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
        let mut plain_len = 0u64;
        let received: ServerResult<()> = async {
            loop {
                let item = match tokio::time::timeout(idle, body.next()).await {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(_) => {
                        return Err(ServerError::s3(
                            s3s::S3ErrorCode::RequestTimeout,
                            "Your socket connection to the server was not read from or written to within the timeout period.",
                        ))
                    }
                };
                let bytes = item.map_err(|e| body_error(&*e))?;
                plain_len += bytes.len() as u64;
                if plain_len > max_len {
                    return Err(ServerError::s3(
                        s3s::S3ErrorCode::EntityTooLarge,
                        "Your proposed upload exceeds the maximum allowed object size.",
                    ));
                }
                batch.extend_from_slice(&bytes);
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Batch::Data(full)).await.is_err() {
                        // The worker failed; its error is reported below.
                        return Ok(());
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Batch::Data(std::mem::take(&mut batch))).await;
            }
            let _ = tx.send(Batch::End).await;
            Ok(())
        }
        .await;
        // Without `End` the worker aborts the upload.
        drop(tx);
        let written = worker
            .await
            .map_err(|e| ServerError::Internal(format!("blob writer: {e}")))?;
        received?;
        let (md5, checksums, blob_len) = written?;
        Ok(WrittenBlob {
            name,
            plain_len,
            blob_len,
            header_len,
            md5,
            checksums,
        })
    }

    pub async fn delete(&self, name: &str) {
        if let Err(e) = self.store.delete(&blob_path(name)).await {
            tracing::warn!("could not delete blob {name}: {e}");
        }
    }

    /// Opens a segment for reading: reads and parses its header, unwraps its data key,
    /// checks the key commitment and authenticates the trailer (so the length is authentic).
    pub async fn open(
        &self,
        seg: &Segment,
        keys: &Keys,
        sse: &SseRecord,
        customer: Option<&CustomerKey>,
        proof: Option<&KeyUse>,
        context: &Context,
    ) -> ServerResult<OpenBlob> {
        let path = blob_path(&seg.blob);
        let layout = ObjectLayout::new(seg.header_len, seg.blob_len)?;
        // The file must be exactly as long as recorded: bytes appended to a blob are damage
        // too (spec/object-format.md §7), even though the layout would never read them.
        let whole = if seg.blob_len <= SMALL_BLOB {
            let got = self.store.get(&path).await.map_err(|e| missing(&path, e))?;
            if got.meta.size != seg.blob_len {
                return Err(length_mismatch(&path, got.meta.size, seg.blob_len));
            }
            let bytes = got.bytes().await?;
            if bytes.len() as u64 != seg.blob_len {
                return Err(length_mismatch(&path, bytes.len() as u64, seg.blob_len));
            }
            Some(bytes)
        } else {
            let meta = self
                .store
                .head(&path)
                .await
                .map_err(|e| missing(&path, e))?;
            if meta.size != seg.blob_len {
                return Err(length_mismatch(&path, meta.size, seg.blob_len));
            }
            None
        };
        let head = match &whole {
            Some(b) => b.slice(0..(seg.header_len as usize + PREFIX_LEN).min(b.len())),
            None => {
                self.get(&path, 0..seg.header_len + PREFIX_LEN as u64)
                    .await?
            }
        };
        let trailer = match &whole {
            Some(b) => {
                let span = layout.trailer_span();
                b.slice(span.start as usize..span.end as usize)
            }
            None => self.get(&path, layout.trailer_span()).await?,
        };
        let header_len = seg.header_len as usize;
        let header = Header::parse(&head[..header_len])?;
        let key_version = header.wrapped_dek().reference().version;
        let dek = keys
            .unwrap_dek(sse, customer, proof, header.wrapped_dek(), context)
            .await?;
        let (dec, metadata) =
            RangeDecryptor::new(dek, context, &header, &head[header_len..], layout)?;
        dec.verify_trailer(&trailer)?;
        if layout.plaintext_len() != seg.plain_len {
            return Err(ServerError::Integrity(
                "stored length does not match the blob".into(),
            ));
        }
        Ok(OpenBlob {
            path,
            dec,
            whole,
            metadata,
            key_version,
        })
    }

    async fn get(&self, path: &Path, range: Range<u64>) -> ServerResult<Bytes> {
        let want = range.end - range.start;
        let bytes = self
            .store
            .get_range(path, range)
            .await
            .map_err(|e| missing(path, e))?;
        if bytes.len() as u64 != want {
            return Err(ServerError::Integrity(format!("blob {path} is truncated")));
        }
        Ok(bytes)
    }

    /// Decrypts `plain` (a range of the segment's plaintext) into `tx`, window by window.
    /// Returns false if the receiver went away.
    pub async fn stream_range(
        &self,
        blob: &OpenBlob,
        mut plain: Range<u64>,
        tx: &mpsc::Sender<Result<Bytes, StdError>>,
    ) -> ServerResult<bool> {
        while let Some(data) = self.next_window(blob, &mut plain).await? {
            if tx.send(Ok(data)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Decrypts the next window (up to 2 MiB) of `plain` and advances it; None when done.
    /// Every chunk is authenticated before any of its bytes are returned.
    pub async fn next_window(
        &self,
        blob: &OpenBlob,
        plain: &mut Range<u64>,
    ) -> ServerResult<Option<Bytes>> {
        if plain.start >= plain.end {
            return Ok(None);
        }
        let layout = *blob.dec.layout();
        let (chunk, last) = layout.chunks_for(plain);
        let end = (chunk + READ_CHUNKS - 1).min(last);
        let span = layout.chunk_span(chunk, end);
        let ciphertext = match &blob.whole {
            Some(b) => b.slice(span.start as usize..span.end as usize),
            None => self.get(&blob.path, span).await?,
        };
        let window_start = chunk * CHUNK_SIZE as u64;
        let data = cpu(|| -> ServerResult<Bytes> {
            let mut out = Vec::with_capacity(ciphertext.len());
            blob.dec.open_chunks(chunk, &ciphertext, &mut out)?;
            let lo = (plain.start - window_start) as usize;
            let hi = ((plain.end - window_start) as usize).min(out.len());
            let out = Bytes::from(out);
            Ok(out.slice(lo.min(hi)..hi))
        })?;
        plain.start = (window_start + (end + 1 - chunk) * CHUNK_SIZE as u64).min(plain.end);
        Ok(Some(data))
    }
}

/// A name [`BlobStore::new_name`] makes: 32 lower-case hex digits.
fn is_blob_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Start-up sweep of a local blob directory: removes the staging files (`<name>#<n>`) of
/// writes a crash interrupted. Only safe while no other process writes the directory: the
/// server holds the data directory's lock when it calls this. Returns the files removed.
/// (Uncommitted blobs are [`BlobStore::collect_garbage`]'s.)
pub fn sweep_local_staging(dir: &FsPath) -> ServerResult<usize> {
    let mut staging = 0;
    let io = |e: std::io::Error| ServerError::Internal(format!("sweep {}: {e}", dir.display()));
    for fan in std::fs::read_dir(dir).map_err(io)? {
        let fan = fan.map_err(io)?;
        if !fan.file_type().map_err(io)?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(fan.path()).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains('#') {
                staging += 1;
                std::fs::remove_file(entry.path()).map_err(io)?;
            }
        }
    }
    Ok(staging)
}

fn missing(path: &Path, e: object_store::Error) -> ServerError {
    match e {
        object_store::Error::NotFound { .. } => {
            ServerError::Integrity(format!("blob {path} is missing"))
        }
        e => e.into(),
    }
}

fn length_mismatch(path: &Path, got: u64, want: u64) -> ServerError {
    ServerError::Integrity(format!(
        "blob {path} is {got} bytes long, {want} were written"
    ))
}

enum Batch {
    Data(Vec<u8>),
    End,
}

type WorkerResult = ServerResult<([u8; 16], s3s::dto::Checksum, u64)>;

/// The second stage of [`BlobStore::write`]: hash, encrypt, write.
async fn write_worker(
    store: Arc<dyn ObjectStore>,
    path: Path,
    enc: ObjectEncryptor,
    mut out: Vec<u8>,
    mut hasher: ChecksumHasher,
    mut rx: mpsc::Receiver<Batch>,
) -> WorkerResult {
    let mut enc = Some(enc);
    let mut md5 = Md5::new();
    let mut upload: Option<WriteMultipart> = None;
    let mut blob_len = 0u64;
    let result: ServerResult<()> = async {
        loop {
            match rx.recv().await {
                Some(Batch::Data(batch)) => {
                    cpu(|| -> ServerResult<()> {
                        let enc = enc.as_mut().ok_or_else(finished)?;
                        let (r, ()) = rayon::join(
                            || enc.update(&batch, &mut out),
                            || {
                                md5.update(&batch);
                                hasher.update(&batch);
                            },
                        );
                        r.map_err(ServerError::from)
                    })?;
                    if out.len() >= PART {
                        let up = match upload.as_mut() {
                            Some(up) => up,
                            None => upload.insert(WriteMultipart::new_with_chunk_size(
                                store.put_multipart(&path).await?,
                                PART,
                            )),
                        };
                        blob_len += out.len() as u64;
                        up.put(Bytes::from(std::mem::replace(
                            &mut out,
                            Vec::with_capacity(PART + BATCH),
                        )));
                        up.wait_for_capacity(2).await?;
                    }
                }
                Some(Batch::End) => {
                    cpu(|| enc_finish(&mut enc, &mut out))?;
                    blob_len += out.len() as u64;
                    let last = Bytes::from(std::mem::take(&mut out));
                    match upload.take() {
                        Some(mut up) => {
                            up.put(last);
                            up.finish().await?;
                        }
                        None => {
                            store
                                .put_opts(
                                    &path,
                                    PutPayload::from(last),
                                    object_store::PutMode::Create.into(),
                                )
                                .await?;
                        }
                    }
                    return Ok(());
                }
                None => {
                    return Err(ServerError::Internal("upload interrupted".into()));
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        if let Some(up) = upload.take() {
            let _ = up.abort().await;
        }
        return Err(e);
    }
    Ok((md5.finalize().into(), hasher.finalize(), blob_len))
}

/// The message of the framing errors coffer-server's aws-chunked checker raises (matched by
/// [`body_error`]).
pub const FRAMING_ERROR: &str = "aws-chunked framing";

/// Maps a request-body error to S3's error. s3s's body error types are private and its
/// aws-chunked wrapper (`AwsChunkedStreamError::Underlying`) does not expose its cause as a
/// `source()`, so neither s3s's errors nor the framing errors of `aws_chunked.rs` that pass
/// through it can be downcast here: this goes by their messages (s3s's variant names, and
/// `FRAMING_ERROR`). The one message match left in the server, for that reason only.
fn body_error(e: &(dyn std::error::Error + 'static)) -> ServerError {
    let msg = e.to_string();
    if msg.contains("Sha256Mismatch") {
        ServerError::s3(
            s3s::S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    } else if msg.contains("SignatureMismatch") {
        ServerError::s3(
            s3s::S3ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided.",
        )
    } else if msg.contains(FRAMING_ERROR) && msg.contains("checksum trailer") {
        ServerError::invalid_request(
            "Expecting a single x-amz-checksum- trailer. Multiple checksum Types are not allowed.",
        )
    } else if msg.contains(FRAMING_ERROR) && msg.contains("final") {
        ServerError::s3(
            s3s::S3ErrorCode::IncompleteBody,
            "The aws-chunked body ended before its final (signed) zero-length chunk.",
        )
    } else if msg.contains("FormatError") || msg.contains("TooLarge") || msg.contains("TooMany") {
        ServerError::invalid_request(format!("malformed aws-chunked body: {msg}"))
    } else {
        ServerError::s3(
            s3s::S3ErrorCode::IncompleteBody,
            format!("You did not provide the number of bytes specified by the Content-Length HTTP header: {msg}"),
        )
    }
}

fn finished() -> ServerError {
    ServerError::Internal("encryptor already finished".into())
}

fn enc_finish(enc: &mut Option<ObjectEncryptor>, out: &mut Vec<u8>) -> ServerResult<()> {
    enc.take().ok_or_else(finished)?.finish(out)?;
    Ok(())
}

/// A segment ready to be read.
pub struct OpenBlob {
    path: Path,
    dec: RangeDecryptor,
    whole: Option<Bytes>,
    pub metadata: Metadata,
    /// The version of the key that wrapped this blob's data key (its header says).
    pub key_version: u32,
}

pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    /// The SSE-S3 keys of a KMS on a fresh directory (in-memory key store).
    async fn keys(dir: &FsPath) -> Keys {
        let sealer = coffer_kms::KeyFileSealer::new(dir.join("root.key"));
        let kms = coffer_kms::Kms::builder(coffer_kms::KmsConfig::new(dir.join("kms")), &sealer)
            .key_store(Arc::new(coffer_kms::MemoryKeyStore::new()))
            .open()
            .await
            .unwrap();
        Keys::new(Arc::new(kms)).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        conformance::run(store, &keys(dir.path()).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_local_disk() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(&blobs).unwrap());
        conformance::run(store, &keys(dir.path()).await).await;
    }

    /// The local start-up sweep removes staging files and nothing else (uncommitted blobs
    /// are the collector's).
    #[tokio::test]
    async fn the_local_sweep_removes_only_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let name = BlobStore::new_name();
        let fan = dir.path().join(&name[..2]);
        std::fs::create_dir_all(&fan).unwrap();
        std::fs::write(fan.join(&name), b"blob").unwrap();
        std::fs::write(fan.join(format!("{name}#3")), b"staging").unwrap();
        assert_eq!(sweep_local_staging(dir.path()).unwrap(), 1);
        assert!(fan.join(&name).exists());
        assert!(!fan.join(format!("{name}#3")).exists());
    }
}
