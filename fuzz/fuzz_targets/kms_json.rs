//! The KMS API's JSON request bodies (`coffer_kms_api::KmsApi::handle`): every
//! operation that reads its body and uses a key without changing the key store, on a real
//! KMS in a temporary directory with one key owned by the caller. No panic; a failure has an
//! AWS exception name; a success is a JSON object.
//!
//! Input: byte 0 selects the operation; the rest is the body, with every `KEYID` replaced by
//! the key's id (so seeds reach past the key lookup) and every `BLOB` by a valid ciphertext
//! blob under it (so Decrypt/ReEncrypt reach the context and version checks).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use coffer_kms::{KeyFileSealer, Kms, KmsConfig};
use futures::executor::block_on;
use coffer_kms_api::{KmsApi, KmsAudit};
use coffer_iam::principal::{IdentityLookup, Principal};
use libfuzzer_sys::fuzz_target;

const OPS: &[&str] = &[
    "DescribeKey",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "GetKeyPolicy",
    "GetKeyRotationStatus",
    "ListKeys",
    "ListAliases",
    "ListGrants",
    "ListResourceTags",
    "ListKeyRotations",
    "NoSuchOperation",
];

struct Nobody;
impl IdentityLookup for Nobody {
    fn lookup(&self, _: &str) -> Option<(zeroize::Zeroizing<String>, Principal)> {
        None
    }
    // The fuzzed caller is root, which the server allows the key-less operations.
    fn allows_unbound(&self, p: &Principal, _: &str, _: bool) -> bool {
        p.is_root()
    }
}

struct Setup {
    api: KmsApi,
    caller: Principal,
    key_id: String,
    blob: String,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coffer-fuzz-kms-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // No Tokio runtime here: the SQLCipher key store works on the calling thread.
        let sealer = KeyFileSealer::new(dir.join("root.key"));
        let kms = block_on(Kms::builder(KmsConfig::new(dir.join("kms")), &sealer).open())
            .expect("open KMS");
        let api = KmsApi::new(Arc::new(kms), Arc::new(Nobody), true, Duration::from_secs(30));
        let caller = Principal::authenticated("root", "FUZZ", true);
        let mut audit = KmsAudit::default();
        let created =
            block_on(api.handle(&caller, "CreateKey", b"{}", &mut audit)).expect("CreateKey");
        let v: serde_json::Value = serde_json::from_str(&created).expect("JSON");
        let key_id = v["KeyMetadata"]["KeyId"].as_str().expect("KeyId").to_owned();
        let body = format!(r#"{{"KeyId":"{key_id}","Plaintext":"AAEC","EncryptionContext":{{"a":"b"}}}}"#);
        let enc = block_on(api.handle(&caller, "Encrypt", body.as_bytes(), &mut KmsAudit::default()))
            .expect("Encrypt");
        let v: serde_json::Value = serde_json::from_str(&enc).expect("JSON");
        let blob = v["CiphertextBlob"].as_str().expect("blob").to_owned();
        Setup { api, caller, key_id, blob }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    let op = OPS[sel as usize % OPS.len()];
    let body = String::from_utf8_lossy(rest)
        .replace("KEYID", &s.key_id)
        .replace("BLOB", &s.blob);
    let mut audit = KmsAudit::default();
    match block_on(s.api.handle(&s.caller, op, body.as_bytes(), &mut audit)) {
        Ok(reply) => {
            let v: serde_json::Value = serde_json::from_str(&reply).expect("a reply is JSON");
            assert!(v.is_object(), "a reply is a JSON object");
        }
        Err(e) => {
            assert!(e.code.ends_with("Exception"), "AWS exception name: {}", e.code);
            assert!((400..600).contains(&e.status));
        }
    }
});
