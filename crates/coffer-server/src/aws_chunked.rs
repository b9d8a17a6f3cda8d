//! Framing checks of `aws-chunked` request bodies that s3s's decoder leaves out: the body
//! passes through unchanged (s3s decodes it and checks the chunk signatures); this only
//! watches the framing and fails the body when
//!
//! - it ends before the final zero-length chunk (s3s accepts a body whose data is complete
//!   but whose final chunk — and so its signature — is missing), or
//! - its trailer section names more than one `x-amz-checksum-*` (one checksum per request).
//!
//! A failed body makes the upload fail before anything is committed (`400 IncompleteBody` /
//! `400 InvalidRequest`, see `coffer_s3::save`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

/// The message of the errors this module raises: the blob layer recognises it (the body
/// error types in between are private to s3s, see `coffer_store::blob`).
pub use coffer_store::blob::FRAMING_ERROR;

/// Longest chunk-header or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Reading a chunk header line (`hex-size[;chunk-signature=…]`).
    Header,
    /// Inside a chunk's data: bytes left.
    Data(u64),
    /// The CRLF after a chunk's data: bytes of it seen.
    DataEnd(u8),
    /// After the final chunk: trailer lines until an empty one.
    Trailers,
    /// The empty line after the trailers was seen.
    Done,
}

/// The framing state machine, fed the raw body bytes.
#[derive(Debug)]
pub struct Framing {
    state: State,
    line: Vec<u8>,
    checksum_trailers: u32,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            state: State::Header,
            line: Vec::new(),
            checksum_trailers: 0,
        }
    }
}

fn err(msg: &str) -> String {
    format!("{FRAMING_ERROR}: {msg}")
}

impl Framing {
    /// Feeds bytes; `Err` describes the first framing error.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.state {
                State::Data(left) => {
                    let n = left.min(data.len() as u64) as usize;
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd(0)
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd(seen) => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if data[0] != want {
                        return Err(err("chunk data not followed by CRLF"));
                    }
                    data = &data[1..];
                    self.state = if seen == 0 {
                        State::DataEnd(1)
                    } else {
                        State::Header
                    };
                }
                State::Header | State::Trailers => {
                    let Some(pos) = data.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > MAX_LINE {
                            return Err(err("line too long"));
                        }
                        return Ok(());
                    };
                    self.line.extend_from_slice(&data[..pos]);
                    data = &data[pos + 1..];
                    if self.line.len() > MAX_LINE {
                        return Err(err("line too long"));
                    }
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.line_done(line)?;
                }
                State::Done => {
                    if data.iter().any(|b| !b.is_ascii_whitespace()) {
                        return Err(err("data after the final chunk"));
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<(), String> {
        match self.state {
            State::Header => {
                let size = line.split(|&b| b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                    .ok_or_else(|| err("bad chunk size"))?;
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::Data(size)
                };
            }
            State::Trailers => {
                if line.is_empty() {
                    self.state = State::Done;
                } else {
                    let name = line.split(|&b| b == b':').next().unwrap_or_default();
                    if name.to_ascii_lowercase().starts_with(b"x-amz-checksum-") {
                        self.checksum_trailers += 1;
                        if self.checksum_trailers > 1 {
                            return Err(err("more than one checksum trailer"));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// At the end of the body: the final chunk must have been seen (the empty line after
    /// the trailers may be missing; a half-read line may not).
    pub fn finish(&self) -> Result<(), String> {
        match self.state {
            State::Done => Ok(()),
            State::Trailers if self.line.is_empty() => Ok(()),
            _ => Err(err("the body ended before its final zero-length chunk")),
        }
    }
}

/// A request body checked by [`Framing`] as it streams.
pub struct Checked<B> {
    inner: B,
    framing: Framing,
    failed: bool,
}

impl<B> Checked<B> {
    pub fn new(inner: B) -> Self {
        Checked {
            inner,
            framing: Framing::default(),
            failed: false,
        }
    }
}

impl<B> Body for Checked<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(msg) = this.framing.feed(data) {
                        this.failed = true;
                        return Poll::Ready(Some(Err(msg.into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => match this.framing.finish() {
                Ok(()) => Poll::Ready(None),
                Err(msg) => {
                    this.failed = true;
                    Poll::Ready(Some(Err(msg.into())))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(parts: &[&[u8]]) -> Result<(), String> {
        let mut f = Framing::default();
        for p in parts {
            f.feed(p)?;
        }
        f.finish()
    }

    #[test]
    fn framing() {
        let sig = "chunk-signature=".to_owned() + &"a".repeat(64);
        let good = format!("5;{sig}\r\nhello\r\n0;{sig}\r\n\r\n");
        assert_eq!(run(&[good.as_bytes()]), Ok(()));
        // byte by byte
        let bytes: Vec<&[u8]> = good.as_bytes().chunks(1).collect();
        assert_eq!(run(&bytes), Ok(()));
        // unsigned with a trailer
        let t = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        assert_eq!(run(&[t]), Ok(()));
        // final CRLF missing after the zero chunk: accepted
        assert_eq!(
            run(&[format!("5;{sig}\r\nhello\r\n0;{sig}\r\n").as_bytes()]),
            Ok(())
        );
        // final chunk missing
        assert!(run(&[format!("5;{sig}\r\nhello\r\n").as_bytes()]).is_err());
        assert!(run(&[b"5\r\nhel"]).is_err());
        // two checksum trailers
        let two =
            b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-checksum-sha256:x\r\n\r\n";
        assert!(run(&[two]).is_err());
        // bad size, missing CRLF after data
        assert!(run(&[b"zz\r\n"]).is_err());
        assert!(run(&[b"3\r\nabcX\r\n0\r\n\r\n"]).is_err());
        assert!(run(&[&vec![b'1'; 5000]]).is_err());
    }
}
