//! A POST form upload's body, passed through unchanged while its start is recorded for the
//! `${filename}` key variable (see `coffer_iam::post_form`: s3s 0.14 reads the form but
//! keeps the file part's name to itself).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use coffer_iam::post_form::{PostForm, PREFIX_LIMIT};
use http_body::{Body, Frame};

/// A request body whose first [`PREFIX_LIMIT`] bytes go to a [`PostForm`].
pub struct Recorded<B> {
    inner: B,
    form: PostForm,
    seen: usize,
}

impl<B> Recorded<B> {
    pub fn new(inner: B, form: PostForm) -> Self {
        Recorded {
            inner,
            form,
            seen: 0,
        }
    }
}

impl<B> Body for Recorded<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                if this.seen < PREFIX_LIMIT {
                    this.form.record(data);
                }
                this.seen = this.seen.saturating_add(data.len());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
