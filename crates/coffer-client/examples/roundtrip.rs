//! Encrypts an object on this machine, stores it in an S3 bucket, reads it back, and shows
//! that the store holds only ciphertext.
//!
//! ```text
//! coffer server --data-dir /tmp/coffer-data     # prints endpoint and ca-bundle
//! export AWS_ENDPOINT_URL=https://127.0.0.1:PORT AWS_CA_BUNDLE=/tmp/coffer-data/tls/ca.pem
//! export AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…
//! coffer mb s3://example-bucket
//! cargo run -p coffer-client --example roundtrip -- example-bucket [KMS-KEY-ID | file:KEYFILE]
//! ```
//!
//! Without a key argument a throw-away key file is generated in memory.

use coffer_client::{Endpoint, Kek, KeyFile, Keyring, KmsKek, ServerSide, Transfers, MARKER_NAME};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bucket = args
        .next()
        .ok_or("usage: roundtrip BUCKET [KMS-KEY-ID | file:KEYFILE]")?;
    let endpoint = Endpoint {
        url: std::env::var("AWS_ENDPOINT_URL").ok(),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        access_key_id: env("AWS_ACCESS_KEY_ID")?,
        secret_access_key: env("AWS_SECRET_ACCESS_KEY")?.into(),
        ca_bundle: std::env::var_os("AWS_CA_BUNDLE").map(Into::into),
        path_style: true,
    };
    // The writer's key-encryption key: a KMS key (the KMS sees only the data key) or a key
    // file (nothing leaves the machine but ciphertext).
    let kek = match args.next() {
        Some(spec) => match spec.strip_prefix("file:") {
            Some(path) => Kek::KeyFile(KeyFile::parse(&std::fs::read_to_string(path)?)?),
            None => Kek::Kms(KmsKek::new(endpoint.kms_client()?, Some(spec))),
        },
        None => Kek::KeyFile(KeyFile::generate()?),
    };
    let transfers = Transfers::new(endpoint.s3_client()?);
    let plaintext = b"the store never sees this sentence".repeat(1000);

    let stored = transfers
        .put_bytes(
            plaintext.clone(),
            &bucket,
            "example/object",
            Some(&kek),
            &ServerSide::Default,
        )
        .await?;
    println!(
        "stored {} plaintext bytes as {} bytes of ciphertext",
        stored.plaintext_len, stored.stored_len
    );

    // What any other S3 client sees: Coffer's format, marked as client-encrypted.
    let raw = transfers
        .s3()
        .get_object()
        .bucket(&bucket)
        .key("example/object")
        .send()
        .await?;
    let marked = raw.metadata().and_then(|m| m.get(MARKER_NAME)).cloned();
    let bytes = raw.body.collect().await?.into_bytes();
    assert!(bytes.starts_with(b"COFFER"));
    println!(
        "raw object starts with {:?}, marker {marked:?}",
        &bytes[..6]
    );

    // The reader's keyring: the key the object's header names is used.
    let keyring = Keyring::new().with(kek);
    let back = transfers
        .get_bytes(&bucket, "example/object", &keyring, &ServerSide::Default)
        .await?;
    assert_eq!(back, plaintext);
    println!("decrypted {} bytes: round trip ok", back.len());
    Ok(())
}
