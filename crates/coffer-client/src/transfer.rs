//! Uploads and downloads through any S3 endpoint, with optional client-side encryption and
//! optional server-side encryption on top.
//!
//! Uploads read the source on a blocking thread that encrypts into parts of `part_size`
//! ciphertext bytes; up to `concurrency` parts are in flight while at most `concurrency` more
//! wait, so memory stays near `2 × concurrency × part_size` whatever the object size. Downloads
//! fetch `part_size` ranges, `concurrency` at a time, and decrypt them in order on a blocking
//! thread; a file download writes a temporary file beside the destination and renames it only
//! after the final chunk and trailer authenticated, so a failure leaves no partial file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;
use coffer_format::chunked::PayloadLayout;
use coffer_format::header::{header_len, Header, FIXED_LEN, TRAILER_LEN};
use coffer_format::{Metadata, ObjectDecryptor, ObjectEncryptor, SecretKey};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::envelope::object_context;
use crate::error::{describe_sdk_error, Error, Result};
use crate::kek::{Kek, Keyring};

/// User metadata name (`x-amz-meta-coffer-client-encrypted`) marking a client-encrypted
/// object; its value is the client format generation, [`MARKER_VALUE`].
pub const MARKER_NAME: &str = "coffer-client-encrypted";
pub const MARKER_VALUE: &str = "v1";
/// User metadata name (`x-amz-meta-coffer-kek`) with the provider kind (`kms`, `file`,
/// `passphrase`): a hint for people and tools; the header's key reference is authoritative.
pub const KEK_HINT_NAME: &str = "coffer-kek";

/// The smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
const READ_SIZE: usize = 1024 * 1024;

/// Server-side encryption requested on top of (or instead of) client-side encryption.
pub enum ServerSide {
    /// Whatever the bucket's default is.
    Default,
    /// `x-amz-server-side-encryption: AES256` (SSE-S3).
    S3Managed,
    /// `aws:kms` with the given key (or the store's default KMS key).
    Kms { key_id: Option<String> },
    /// SSE-C: the store encrypts with this key and keeps only a fingerprint of it.
    CustomerKey(SecretKey),
}

impl ServerSide {
    fn customer_headers(&self) -> Option<(String, String)> {
        use base64::Engine as _;
        use md5::Digest as _;
        match self {
            ServerSide::CustomerKey(key) => {
                let b64 = base64::engine::general_purpose::STANDARD;
                Some((
                    b64.encode(key.expose()),
                    b64.encode(md5::Md5::digest(key.expose())),
                ))
            }
            _ => None,
        }
    }
}

/// Observes a transfer: the plaintext length once known, then plaintext bytes as they move.
pub trait Progress: Send + Sync {
    fn start(&self, _total: u64) {}
    fn advance(&self, _bytes: u64) {}
}

/// A progress observer that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What an upload stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSummary {
    pub plaintext_len: u64,
    /// Bytes stored (header, payload and trailer for a client-encrypted object).
    pub stored_len: u64,
    pub parts: usize,
}

/// What a download returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSummary {
    pub plaintext_len: u64,
    /// Whether the object was client-encrypted (and so decrypted here).
    pub client_encrypted: bool,
    /// For a client-encrypted object: which key unwrapped it (no secrets).
    pub key: Option<String>,
}

/// S3 transfers with bounded memory. Cheap to clone the underlying client; build one per
/// program.
pub struct Transfers {
    s3: aws_sdk_s3::Client,
    part_size: usize,
    concurrency: usize,
}

impl Transfers {
    /// Parts of 8 MiB, 4 in flight.
    pub fn new(s3: aws_sdk_s3::Client) -> Self {
        Transfers {
            s3,
            part_size: 8 * 1024 * 1024,
            concurrency: 4,
        }
    }

    /// Part (and range) size; at least 5 MiB, S3's minimum part size.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(MIN_PART_SIZE);
        self
    }

    /// Parts in flight at once (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// Uploads a local file to `bucket/key`, client-encrypted when `kek` is given.
    pub async fn upload_file(
        &self,
        path: &Path,
        bucket: &str,
        key: &str,
        kek: Option<&Kek>,
        sse: &ServerSide,
        progress: &dyn Progress,
    ) -> Result<UploadSummary> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?
            .len();
        self.upload(file, len, bucket, key, kek, sse, progress)
            .await
    }

    /// Uploads bytes held in memory.
    pub async fn put_bytes(
        &self,
        data: Vec<u8>,
        bucket: &str,
        key: &str,
        kek: Option<&Kek>,
        sse: &ServerSide,
    ) -> Result<UploadSummary> {
        let len = data.len() as u64;
        self.upload(
            std::io::Cursor::new(data),
            len,
            bucket,
            key,
            kek,
            sse,
            &NoProgress,
        )
        .await
    }

    /// Uploads `len` bytes read from `source`.
    #[allow(clippy::too_many_arguments)] // the S3 object's identity plus the two layers
    pub async fn upload<R: Read + Send + 'static>(
        &self,
        source: R,
        len: u64,
        bucket: &str,
        key: &str,
        kek: Option<&Kek>,
        sse: &ServerSide,
        progress: &dyn Progress,
    ) -> Result<UploadSummary> {
        progress.start(len);
        let (encryptor, first) = match kek {
            Some(kek) => {
                let context = object_context(bucket, key)?;
                let (dek, wrapped) = kek.new_data_key(&context).await?;
                let (mut enc, first) =
                    ObjectEncryptor::new(&dek, &wrapped, &context, &Metadata::new())?;
                enc.set_parallel(parallel_crypto());
                (Some(enc), first)
            }
            None => (None, Vec::new()),
        };
        let stored_len = match &encryptor {
            Some(_) => {
                first.len() as u64 - coffer_format::chunked::PREFIX_LEN as u64
                    + PayloadLayout::payload_len(len)
                    + TRAILER_LEN as u64
            }
            None => len,
        };
        let part_size = self.part_size;
        let (tx, mut rx) = mpsc::channel::<Result<(Bytes, u64)>>(self.concurrency);
        let producer = tokio::task::spawn_blocking(move || {
            produce_parts(source, encryptor, first, part_size, &tx)
        });
        let target = format!("s3://{bucket}/{key}");
        let metadata = kek.map(|k| k.hint());
        let result = if stored_len <= part_size as u64 {
            self.put_single(&mut rx, bucket, key, metadata, sse, progress, &target)
                .await
        } else {
            self.put_multipart(&mut rx, bucket, key, metadata, sse, progress, &target)
                .await
        };
        drop(rx);
        let produced = producer
            .await
            .map_err(|e| Error::Invalid(format!("upload reader thread failed: {e}")))?;
        let parts = result?;
        produced?;
        Ok(UploadSummary {
            plaintext_len: len,
            stored_len,
            parts,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_single(
        &self,
        rx: &mut mpsc::Receiver<Result<(Bytes, u64)>>,
        bucket: &str,
        key: &str,
        kek_hint: Option<&str>,
        sse: &ServerSide,
        progress: &dyn Progress,
        target: &str,
    ) -> Result<usize> {
        let mut body = Vec::new();
        let mut plain = 0;
        while let Some(part) = rx.recv().await {
            let (bytes, n) = part?;
            body.extend_from_slice(&bytes);
            plain += n;
        }
        let mut req = self.s3.put_object().bucket(bucket).key(key);
        if let Some(hint) = kek_hint {
            req = req
                .metadata(MARKER_NAME, MARKER_VALUE)
                .metadata(KEK_HINT_NAME, hint);
        }
        req = match sse {
            ServerSide::Default => req,
            ServerSide::S3Managed => req.server_side_encryption(ServerSideEncryption::Aes256),
            ServerSide::Kms { key_id } => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
            ServerSide::CustomerKey(_) => req,
        };
        if let Some((k, md5)) = sse.customer_headers() {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k)
                .sse_customer_key_md5(md5);
        }
        req.body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", target, &e))?;
        progress.advance(plain);
        Ok(1)
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_multipart(
        &self,
        rx: &mut mpsc::Receiver<Result<(Bytes, u64)>>,
        bucket: &str,
        key: &str,
        kek_hint: Option<&str>,
        sse: &ServerSide,
        progress: &dyn Progress,
        target: &str,
    ) -> Result<usize> {
        let mut req = self.s3.create_multipart_upload().bucket(bucket).key(key);
        if let Some(hint) = kek_hint {
            req = req
                .metadata(MARKER_NAME, MARKER_VALUE)
                .metadata(KEK_HINT_NAME, hint);
        }
        req = match sse {
            ServerSide::Default | ServerSide::CustomerKey(_) => req,
            ServerSide::S3Managed => req.server_side_encryption(ServerSideEncryption::Aes256),
            ServerSide::Kms { key_id } => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
        };
        let customer = sse.customer_headers();
        if let Some((k, md5)) = &customer {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k)
                .sse_customer_key_md5(md5);
        }
        let created = req
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", target, &e))?;
        let upload_id = created
            .upload_id
            .ok_or_else(|| Error::Invalid("CreateMultipartUpload returned no upload id".into()))?;
        let result = self
            .upload_parts(
                rx,
                bucket,
                key,
                &upload_id,
                customer.as_ref(),
                progress,
                target,
            )
            .await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                // Best effort: the error that stopped the upload is the one to report.
                let _ = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        let count = parts.len();
        let mut complete = self
            .s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if let Some((k, md5)) = &customer {
            complete = complete
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k)
                .sse_customer_key_md5(md5);
        }
        complete
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", target, &e))?;
        Ok(count)
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_parts(
        &self,
        rx: &mut mpsc::Receiver<Result<(Bytes, u64)>>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        customer: Option<&(String, String)>,
        progress: &dyn Progress,
        target: &str,
    ) -> Result<Vec<CompletedPart>> {
        let mut in_flight = FuturesUnordered::new();
        let mut done = Vec::new();
        let mut number: i32 = 0;
        let mut input_open = true;
        loop {
            while input_open && in_flight.len() < self.concurrency {
                match rx.recv().await {
                    Some(part) => {
                        let (bytes, plain) = part?;
                        number += 1;
                        let n = number;
                        let mut req = self
                            .s3
                            .upload_part()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(upload_id)
                            .part_number(n)
                            .body(ByteStream::from(bytes));
                        if let Some((k, md5)) = customer {
                            req = req
                                .sse_customer_algorithm("AES256")
                                .sse_customer_key(k)
                                .sse_customer_key_md5(md5);
                        }
                        in_flight.push(async move { (n, plain, req.send().await) });
                    }
                    None => input_open = false,
                }
            }
            let Some((n, plain, result)) = in_flight.next().await else {
                break;
            };
            let out = result.map_err(|e| s3_error("UploadPart", target, &e))?;
            progress.advance(plain);
            done.push(
                CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(out.e_tag)
                    .build(),
            );
        }
        done.sort_by_key(|p| p.part_number);
        Ok(done)
    }

    /// Downloads `bucket/key` into `dest`, decrypting a client-encrypted object with the key
    /// from `keyring` its header names. `dest` appears only when the whole object verified.
    pub async fn download_file(
        &self,
        bucket: &str,
        key: &str,
        dest: &Path,
        keyring: &Keyring,
        sse: &ServerSide,
        progress: &dyn Progress,
    ) -> Result<DownloadSummary> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dest_owned = dest.to_path_buf();
        let open = move || {
            tempfile::Builder::new()
                .prefix(".coffer-")
                .suffix(".partial")
                .tempfile_in(&dir)
                .map_err(|e| Error::io(format!("cannot create a file in {}", dir.display()), e))
        };
        let (tmp, summary) = self
            .download_with(bucket, key, open, keyring, sse, progress)
            .await?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(format!("cannot write {}", dest_owned.display()), e))?;
        tmp.persist(&dest_owned)
            .map_err(|e| Error::io(format!("cannot write {}", dest_owned.display()), e.error))?;
        Ok(summary)
    }

    /// Downloads into `out` as chunks verify (for standard output); an integrity failure at
    /// the end is reported after the bytes before it were written.
    pub async fn download_to_writer<W: Write + Send + 'static>(
        &self,
        bucket: &str,
        key: &str,
        out: W,
        keyring: &Keyring,
        sse: &ServerSide,
        progress: &dyn Progress,
    ) -> Result<(W, DownloadSummary)> {
        self.download_with(bucket, key, move || Ok(out), keyring, sse, progress)
            .await
    }

    /// Downloads a whole object into memory (decrypted when client-encrypted).
    pub async fn get_bytes(
        &self,
        bucket: &str,
        key: &str,
        keyring: &Keyring,
        sse: &ServerSide,
    ) -> Result<Vec<u8>> {
        let (out, _) = self
            .download_to_writer(bucket, key, Vec::new(), keyring, sse, &NoProgress)
            .await?;
        Ok(out)
    }

    /// The download engine: `open` makes the sink once the key is unwrapped (so a missing or
    /// disabled key creates nothing).
    async fn download_with<W, F>(
        &self,
        bucket: &str,
        key: &str,
        open: F,
        keyring: &Keyring,
        sse: &ServerSide,
        progress: &dyn Progress,
    ) -> Result<(W, DownloadSummary)>
    where
        W: Write + Send + 'static,
        F: FnOnce() -> Result<W>,
    {
        let target = format!("s3://{bucket}/{key}");
        let customer = sse.customer_headers();
        let mut head = self.s3.head_object().bucket(bucket).key(key);
        if let Some((k, md5)) = &customer {
            head = head
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k)
                .sse_customer_key_md5(md5);
        }
        let head = head.send().await.map_err(|e| {
            let mut err = s3_error("HeadObject", &target, &e);
            if let Error::S3 { code, hint, .. } = &mut err {
                // HEAD of an SSE-C object without the key: 400, without a body (so without
                // an error code) as on S3.
                if matches!(code.as_str(), "BadRequest" | "InvalidRequest") && customer.is_none()
                {
                    *hint = Some(
                        "if the object is SSE-C encrypted, give its key: --sse sse-c --sse-c-key-file FILE"
                            .into(),
                    );
                } else if code == "Forbidden" && customer.is_some() {
                    *hint = Some("the SSE-C key does not match the one the object was stored with".into());
                } else if code == "NotFound" {
                    *hint = Some(format!("no object {target} (coffer ls s3://{bucket}/ lists keys)"));
                }
            }
            err
        })?;
        let len = u64::try_from(head.content_length.unwrap_or(0)).unwrap_or(0);
        let encrypted = head
            .metadata
            .as_ref()
            .and_then(|m| m.get(MARKER_NAME))
            .is_some_and(|v| v == MARKER_VALUE);
        let ranges: Vec<(u64, u64)> = (0..len)
            .step_by(self.part_size)
            .map(|start| (start, (start + self.part_size as u64).min(len) - 1))
            .collect();
        let fetch = |(start, end): (u64, u64)| {
            let mut req = self
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .range(format!("bytes={start}-{end}"));
            if let Some((k, md5)) = &customer {
                req = req
                    .sse_customer_algorithm("AES256")
                    .sse_customer_key(k)
                    .sse_customer_key_md5(md5);
            }
            let target = &target;
            async move {
                let out = req
                    .send()
                    .await
                    .map_err(|e| s3_error("GetObject", target, &e))?;
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::S3 {
                        operation: "GetObject",
                        target: target.clone(),
                        code: "ReadFailed".into(),
                        message: e.to_string(),
                        hint: None,
                    })?
                    .into_bytes();
                if data.len() as u64 != end - start + 1 {
                    return Err(Error::S3 {
                        operation: "GetObject",
                        target: target.clone(),
                        code: "ShortRead".into(),
                        message: format!(
                            "asked for {} bytes at {start}, got {}",
                            end - start + 1,
                            data.len()
                        ),
                        hint: Some("the object changed during the download; try again".into()),
                    });
                }
                Ok::<Bytes, Error>(data)
            }
        };
        let mut parts =
            futures::stream::iter(ranges.into_iter().map(fetch)).buffered(self.concurrency);

        let (decryptor, first_rest, plaintext_len, key_description) = if encrypted {
            let first = match parts.next().await {
                Some(first) => first?,
                None => Bytes::new(),
            };
            let fixed = first
                .get(..FIXED_LEN)
                .ok_or(coffer_format::Error::Integrity("object too short"))?;
            let hlen = header_len(fixed)?;
            let header = Header::parse(
                first
                    .get(..hlen)
                    .ok_or(coffer_format::Error::Integrity("object too short"))?,
            )?;
            let layout = coffer_format::ObjectLayout::new(hlen as u64, len)?;
            let context = object_context(bucket, key)?;
            let dek = keyring
                .unwrap_data_key(header.wrapped_dek(), &context)
                .await?;
            let (mut dec, _metadata) = ObjectDecryptor::new(dek, &context, &header)?;
            dec.set_parallel(parallel_crypto());
            let description = crate::kek::describe_reference(header.wrapped_dek().reference());
            (
                Some(dec),
                Some(first.slice(hlen..)),
                layout.plaintext_len(),
                Some(description),
            )
        } else {
            (None, None, len, None)
        };
        progress.start(plaintext_len);
        let sink = open()?;
        let (tx, rx) = mpsc::channel::<Bytes>(self.concurrency);
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<u64>();
        let consumer =
            tokio::task::spawn_blocking(move || consume_parts(rx, sink, decryptor, &progress_tx));
        let mut send_result = Ok(());
        if let Some(rest) = first_rest {
            if tx.send(rest).await.is_err() {
                send_result = Err(());
            }
        }
        while send_result.is_ok() {
            tokio::select! {
                part = parts.next() => match part {
                    Some(Ok(bytes)) => {
                        if tx.send(bytes).await.is_err() {
                            send_result = Err(());
                        }
                    }
                    Some(Err(e)) => {
                        drop(tx);
                        let _ = consumer.await;
                        return Err(e);
                    }
                    None => break,
                },
                Some(n) = progress_rx.recv() => progress.advance(n),
            }
        }
        drop(tx);
        let out = consumer
            .await
            .map_err(|e| Error::Invalid(format!("download writer thread failed: {e}")))?;
        while let Ok(n) = progress_rx.try_recv() {
            progress.advance(n);
        }
        let sink = out?;
        Ok((
            sink,
            DownloadSummary {
                plaintext_len,
                client_encrypted: encrypted,
                key: key_description,
            },
        ))
    }
}

/// Reads `source`, encrypts it when `encryptor` is given (`first` holds the header, salt and
/// commitment), and sends parts of exactly `part_size` bytes (the last one shorter) with the
/// plaintext bytes each part completed.
fn produce_parts<R: Read>(
    mut source: R,
    mut encryptor: Option<ObjectEncryptor>,
    first: Vec<u8>,
    part_size: usize,
    tx: &mpsc::Sender<Result<(Bytes, u64)>>,
) -> Result<()> {
    let result = (|| -> Result<()> {
        let mut pending = Vec::with_capacity(part_size + READ_SIZE + 64);
        pending.extend_from_slice(&first);
        let mut buf = vec![0u8; READ_SIZE];
        let mut plain = 0u64;
        let mut sent_any = false;
        loop {
            let n = read_full(&mut source, &mut buf)
                .map_err(|e| Error::io("reading the upload source", e))?;
            if n == 0 {
                if let Some(enc) = encryptor.take() {
                    enc.finish(&mut pending)?;
                }
                if !pending.is_empty() || !sent_any {
                    send(tx, Bytes::from(std::mem::take(&mut pending)), plain)?;
                }
                return Ok(());
            }
            match encryptor.as_mut() {
                Some(enc) => enc.update(&buf[..n], &mut pending)?,
                None => pending.extend_from_slice(&buf[..n]),
            }
            plain += n as u64;
            while pending.len() >= part_size {
                let rest = pending.split_off(part_size);
                let part = std::mem::replace(&mut pending, {
                    let mut v = Vec::with_capacity(part_size + READ_SIZE + 64);
                    v.extend_from_slice(&rest);
                    v
                });
                send(tx, Bytes::from(part), std::mem::take(&mut plain))?;
                sent_any = true;
            }
        }
    })();
    if let Err(e) = &result {
        // Tell the uploader, unless it already stopped.
        let _ = tx.blocking_send(Err(Error::Invalid(e.to_string())));
    }
    result
}

fn send(tx: &mpsc::Sender<Result<(Bytes, u64)>>, part: Bytes, plain: u64) -> Result<()> {
    tx.blocking_send(Ok((part, plain)))
        .map_err(|_| Error::Invalid("the upload stopped".into()))
}

/// Decrypts (when `decryptor` is given) and writes the parts in order; returns the sink after
/// the whole object verified.
fn consume_parts<W: Write>(
    mut rx: mpsc::Receiver<Bytes>,
    mut sink: W,
    mut decryptor: Option<ObjectDecryptor>,
    progress: &mpsc::UnboundedSender<u64>,
) -> Result<W> {
    let mut out = Vec::new();
    let write_err = |e| Error::io("writing the download", e);
    while let Some(bytes) = rx.blocking_recv() {
        match decryptor.as_mut() {
            Some(dec) => {
                out.clear();
                dec.update(&bytes, &mut out)?;
                sink.write_all(&out).map_err(write_err)?;
                let _ = progress.send(out.len() as u64);
            }
            None => {
                sink.write_all(&bytes).map_err(write_err)?;
                let _ = progress.send(bytes.len() as u64);
            }
        }
    }
    if let Some(dec) = decryptor {
        out.clear();
        dec.finish(&mut out)?;
        sink.write_all(&out).map_err(write_err)?;
        let _ = progress.send(out.len() as u64);
    }
    sink.flush().map_err(write_err)?;
    Ok(sink)
}

fn read_full<R: Read>(source: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match source.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether to seal/open across cores: with three cores or fewer the network stack and the
/// store need them more (the same rule as `coffer encrypt`).
fn parallel_crypto() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 3)
}

/// An [`Error::S3`] for a failed SDK call, with a hint for the common causes.
pub fn s3_error<E>(
    operation: &'static str,
    target: &str,
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let (code, message, hint) = describe_sdk_error(err);
    let hint = hint.or_else(|| match code.as_str() {
        "NoSuchBucket" => Some("create it with `coffer mb s3://BUCKET`".into()),
        "NoSuchKey" => Some("no such object (coffer ls lists keys)".into()),
        "AccessDenied" => Some("your identity may not do this (identity or bucket policy)".into()),
        "KMS.DisabledException" => Some("the server-side KMS key is disabled; enable it".into()),
        "KMS.NotFoundException" => Some("no such KMS key for --sse-kms-key-id".into()),
        _ => None,
    });
    Error::S3 {
        operation,
        target: target.to_owned(),
        code,
        message,
        hint,
    }
}
