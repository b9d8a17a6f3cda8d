//! Async front-ends over `futures` byte streams (runtime-agnostic: tokio users adapt an
//! `AsyncRead` with `tokio_util::io::ReaderStream`, and back with `StreamReader`).

use std::io;

use bytes::Bytes;
use futures::stream::{Stream, StreamExt};

use crate::context::{Context, Metadata};
use crate::header::{header_len, Header, FIXED_LEN};
use crate::object::{DekUnwrapper, ObjectDecryptor, ObjectEncryptor};
use crate::secret::SecretKey;
use crate::wrapped_key::WrappedKey;
use crate::{Error, Result};

/// A stream of byte buffers, as object bodies arrive from and leave for the network.
pub trait ByteStream: Stream<Item = io::Result<Bytes>> + Unpin + Send {}
impl<S: Stream<Item = io::Result<Bytes>> + Unpin + Send> ByteStream for S {}

/// Encrypts a plaintext stream into an object stream (header first, trailer last).
pub fn encrypt_stream<S: ByteStream>(
    input: S,
    dek: &SecretKey,
    wrapped_dek: &WrappedKey,
    context: &Context,
    metadata: &Metadata,
) -> Result<impl Stream<Item = io::Result<Bytes>> + Send> {
    let (enc, first) = ObjectEncryptor::new(dek, wrapped_dek, context, metadata)?;
    let state = (input, Some(enc), Some(first));
    Ok(futures::stream::try_unfold(
        state,
        |(mut input, mut enc, mut first)| async move {
            if let Some(first) = first.take() {
                return Ok(Some((Bytes::from(first), (input, enc, None))));
            }
            loop {
                let Some(e) = enc.as_mut() else {
                    return Ok(None);
                };
                match input.next().await {
                    Some(Ok(data)) => {
                        let mut out = Vec::new();
                        e.update(&data, &mut out)?;
                        if !out.is_empty() {
                            return Ok(Some((Bytes::from(out), (input, enc, None))));
                        }
                    }
                    Some(Err(err)) => return Err(err),
                    None => {
                        let mut out = Vec::new();
                        if let Some(e) = enc.take() {
                            e.finish(&mut out)?;
                        }
                        return Ok(Some((Bytes::from(out), (input, None, None))));
                    }
                }
            }
        },
    ))
}

/// A decrypting stream: yields authenticated plaintext; its last item is an error if the end
/// of the object does not verify.
pub struct DecryptedStream {
    pub header: Header,
    pub metadata: Metadata,
    pub body: futures::stream::BoxStream<'static, io::Result<Bytes>>,
}

/// Reads the header from `input`, unwraps the DEK, and returns a stream of plaintext.
pub async fn decrypt_stream<S: ByteStream + 'static>(
    mut input: S,
    context: &Context,
    unwrapper: &mut dyn DekUnwrapper,
) -> Result<DecryptedStream> {
    let mut head = Vec::new();
    let mut need = FIXED_LEN;
    while head.len() < need {
        match input.next().await {
            Some(Ok(b)) => head.extend_from_slice(&b),
            Some(Err(e)) => return Err(e.into()),
            None => return Err(Error::Malformed("object truncated in its header")),
        }
        if need == FIXED_LEN && head.len() >= FIXED_LEN {
            need = header_len(&head[..FIXED_LEN])?;
        }
    }
    let header = Header::parse(&head[..need])?;
    let dek = unwrapper.unwrap_dek(header.wrapped_dek(), context)?;
    let (dec, metadata) = ObjectDecryptor::new(dek, context, &header)?;
    let rest = Bytes::copy_from_slice(&head[need..]);
    let input = futures::stream::iter([Ok(rest)]).chain(input);
    let body = futures::stream::try_unfold((input, Some(dec)), |(mut input, mut dec)| async move {
        loop {
            let Some(d) = dec.as_mut() else {
                return Ok(None);
            };
            match input.next().await {
                Some(Ok(data)) => {
                    let mut out = Vec::new();
                    d.update(&data, &mut out).map_err(io::Error::from)?;
                    if !out.is_empty() {
                        return Ok(Some((Bytes::from(out), (input, dec))));
                    }
                }
                Some(Err(err)) => return Err(err),
                None => {
                    let mut out = Vec::new();
                    if let Some(d) = dec.take() {
                        d.finish(&mut out).map_err(io::Error::from)?;
                    }
                    return Ok(Some((Bytes::from(out), (input, None))));
                }
            }
        }
    })
    .boxed();
    Ok(DecryptedStream {
        header,
        metadata,
        body,
    })
}
