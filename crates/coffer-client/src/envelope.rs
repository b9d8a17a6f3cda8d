//! Whole-object helpers over the shared format: the object context, and in-memory
//! encryption and decryption with a key-encryption-key provider.

use coffer_format::{decrypt_from_slice, encrypt_to_vec, Context, Header, Metadata};

use crate::error::Result;
use crate::kek::{Kek, Keyring};

/// The context a client-encrypted object is bound to: `{bucket, key}`. The same names the
/// server uses for its own objects (spec/object-format.md §2), so ciphertext copied to another
/// bucket or key fails to decrypt.
pub fn object_context(bucket: &str, key: &str) -> Result<Context> {
    Ok(Context::from_pairs([("bucket", bucket), ("key", key)])?)
}

/// Encrypts `plaintext` as the object `bucket/key` would be stored: header, payload, trailer.
pub async fn encrypt_object(
    kek: &Kek,
    bucket: &str,
    key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let context = object_context(bucket, key)?;
    let (dek, wrapped) = kek.new_data_key(&context).await?;
    Ok(encrypt_to_vec(
        &dek,
        &wrapped,
        &context,
        &Metadata::new(),
        plaintext,
    )?)
}

/// Decrypts an object made by [`encrypt_object`] (or `coffer cp --client-encrypt`) for
/// `bucket/key`, with whichever key of `keyring` its header names.
pub async fn decrypt_object(
    keyring: &Keyring,
    bucket: &str,
    key: &str,
    object: &[u8],
) -> Result<Vec<u8>> {
    let context = object_context(bucket, key)?;
    let fixed = object
        .get(..coffer_format::header::FIXED_LEN)
        .ok_or(coffer_format::Error::Malformed("object truncated"))?;
    let header_len = coffer_format::header::header_len(fixed)?;
    let header = Header::parse(
        object
            .get(..header_len)
            .ok_or(coffer_format::Error::Malformed("object truncated"))?,
    )?;
    // The key service is asynchronous, the format's unwrapper is not: unwrap first, then hand
    // the format a closure that returns the key already obtained.
    let dek = keyring
        .unwrap_data_key(header.wrapped_dek(), &context)
        .await?;
    let mut dek = Some(dek);
    let mut unwrapper = |_: &coffer_format::WrappedKey, _: &Context| {
        dek.take()
            .ok_or(coffer_format::Error::InvalidArgument("data key used twice"))
    };
    let (plaintext, _metadata) = decrypt_from_slice(object, &context, &mut unwrapper)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_format::keyfile::KeyFile;

    #[tokio::test]
    async fn round_trip_binds_bucket_and_key() -> Result<()> {
        let file = KeyFile::generate()?;
        let again = KeyFile::parse(&file.encode())?;
        let kek = Kek::KeyFile(file);
        let plaintext: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let object = encrypt_object(&kek, "photos", "2024/cat.jpg", &plaintext).await?;
        assert!(object.starts_with(b"COFFER"));
        assert!(!object.windows(64).any(|w| w == &plaintext[1000..1064]));
        let ring = Keyring::new().with(Kek::KeyFile(again));
        assert_eq!(
            decrypt_object(&ring, "photos", "2024/cat.jpg", &object).await?,
            plaintext
        );
        let moved = decrypt_object(&ring, "photos", "2024/dog.jpg", &object).await;
        assert!(moved.is_err_and(|e| e.is_integrity()));
        let other_bucket = decrypt_object(&ring, "other", "2024/cat.jpg", &object).await;
        assert!(other_bucket.is_err());
        let mut flipped = object.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 1;
        assert!(decrypt_object(&ring, "photos", "2024/cat.jpg", &flipped)
            .await
            .is_err());
        Ok(())
    }
}
