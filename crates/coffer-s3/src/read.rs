//! The read path: a stored object (its segments) streamed back as plaintext, each blob opened and authenticated first.

use super::*;

/// A response body fed by a decrypting task.
pub(super) struct ChannelBody(mpsc::Receiver<Result<Bytes, StdError>>);

impl Stream for ChannelBody {
    type Item = Result<Bytes, StdError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

pub(super) fn body_stream(
    body: ChannelBody,
) -> impl Stream<Item = Result<Bytes, BodyStreamError>> + Send + Sync + Unpin + 'static {
    futures::StreamExt::map(body, |r| r.map_err(BodyStreamError))
}

/// A body error surfaced to hyper (the connection is cut; no altered bytes are sent).
#[derive(Debug)]
pub struct BodyStreamError(StdError);
impl std::fmt::Display for BodyStreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyStreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl S3Handlers {
    /// Streams the plaintext `range` of an object. The first segment is opened (key
    /// unwrapped, commitment and trailer checked) before this returns, so a wrong key or a
    /// damaged header is an error response rather than a cut body. Also returns, for
    /// SSE-KMS, the key used to open that first segment.
    pub(super) async fn read_stream(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        customer: Option<CustomerKey>,
        proof: Option<KeyUse>,
        range: Range<u64>,
    ) -> ServerResult<(ChannelBody, Option<KeyUsed>)> {
        // (segment, its plaintext range within the segment)
        let mut plan = Vec::new();
        let mut offset = 0u64;
        for seg in &rec.segments {
            let seg_range = offset..offset + seg.plain_len;
            let lo = range.start.max(seg_range.start);
            let hi = range.end.min(seg_range.end);
            if lo < hi || (seg.plain_len == 0 && range.is_empty() && plan.is_empty()) {
                plan.push((seg.clone(), lo - offset..hi.max(lo) - offset));
            }
            offset += seg.plain_len;
        }
        let (tx, rx) = mpsc::channel(2);
        let mut plan = plan.into_iter();
        let Some((first_seg, first_range)) = plan.next() else {
            drop(tx);
            return Ok((ChannelBody(rx), None));
        };
        let ctx = sse::blob_context(bucket, key, &first_seg.version, first_seg.part_number)?;
        let first = self
            .blobs
            .open(
                &first_seg,
                &self.keys,
                &rec.sse,
                customer.as_ref(),
                proof.as_ref(),
                &ctx,
            )
            .await?;
        let used = proof.as_ref().map(|p| KeyUsed::new(p, first.key_version));
        // The first window is decrypted before the response starts: a small object is fully
        // authenticated before its status line, and damage is an error response, not a cut
        // body.
        let mut first_range = first_range;
        if let Some(data) = self.blobs.next_window(&first, &mut first_range).await? {
            tx.try_send(Ok(data))
                .map_err(|_| ServerError::Internal("response channel".into()))?;
        }
        let (blobs, keys) = (Arc::clone(&self.blobs), Arc::clone(&self.keys));
        let (bucket, key, sse) = (bucket.to_owned(), key.to_owned(), rec.sse.clone());
        tokio::spawn(async move {
            let result: ServerResult<()> = async {
                if !blobs.stream_range(&first, first_range, &tx).await? {
                    return Ok(());
                }
                drop(first);
                for (seg, r) in plan {
                    let ctx = sse::blob_context(&bucket, &key, &seg.version, seg.part_number)?;
                    let blob = blobs
                        .open(&seg, &keys, &sse, customer.as_ref(), proof.as_ref(), &ctx)
                        .await?;
                    if !blobs.stream_range(&blob, r, &tx).await? {
                        return Ok(());
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::error!(bucket, key, "read aborted: {e}");
                let failure = coffer_outcome::BodyFailure {
                    integrity: matches!(e, ServerError::Integrity(_)),
                    detail: format!("object read failed: {e}"),
                };
                let _ = tx.send(Err(Box::new(failure))).await;
            }
        });
        Ok((ChannelBody(rx), used))
    }
}
