//! Coffer's envelope format, shared by the server and the client.
//!
//! An object is `header || payload || trailer` (spec/object-format.md):
//! - [`wrapped_key`]: self-describing wrapped data keys bound to an encryption context
//!   (spec/wrapped-key.md);
//! - [`header`]: the versioned object header with the encrypted metadata block;
//! - [`chunked`]: the C2SP chunked-encryption payload (AES-256-GCM, 16 KiB chunks, key
//!   commitment) as a sans-I/O engine;
//! - [`stream`], [`async_stream`], [`range`]: std `Read`/`Write`, async byte streams, and
//!   random-access range decryption over that engine.
//!
//! No I/O stack is assumed: callers bring readers, writers or streams.
#![forbid(unsafe_code)]

pub mod context;
mod cursor;
pub mod error;
pub mod secret;
pub mod wrapped_key;

pub use context::{Context, Metadata, StringMap};
pub use error::{Error, Result};
pub use secret::{SecretBytes, SecretKey};
pub use wrapped_key::{KeyKind, KeyReference, WrappedKey};
pub mod chunked;
pub mod header;
pub mod keyfile;
pub mod object;

pub use header::Header;
pub use object::{
    decrypt_from_slice, encrypt_to_vec, DekUnwrapper, LocalKek, ObjectDecryptor, ObjectEncryptor,
    Summary,
};
pub mod async_stream;
pub mod range;
pub mod stream;

pub use range::{decrypt_range, ByteRange, ObjectLayout, RangeDecryptor};
pub use stream::{DecryptReader, EncryptWriter};
