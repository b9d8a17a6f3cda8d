//! The PKCS#11 sealer against SoftHSM2. Fails (does not skip) when SoftHSM2 is missing,
//! unless COFFER_SKIP_HSM=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use coffer_format::SecretBytes;
use coffer_kms::{Kms, KmsConfig, Pkcs11Sealer};
use common::{ctx, files, passphrase_sealer, Env};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn sealer(token: &str, pin: &str) -> Pkcs11Sealer {
    Pkcs11Sealer {
        module: MODULE.into(),
        token_label: token.into(),
        pin: SecretBytes::new(pin.as_bytes().to_vec()),
        key_label: "coffer-root".into(),
    }
}

fn init_softhsm(dir: &Path) -> bool {
    if std::env::var("COFFER_SKIP_HSM").as_deref() == Ok("1") {
        eprintln!("COFFER_SKIP_HSM=1: skipping the SoftHSM2 test");
        return false;
    }
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM2 is not installed ({MODULE} missing): apt-get install softhsm2, or set COFFER_SKIP_HSM=1"
    );
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // This test binary runs this one test only, so setting the variable is not racy.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "coffer-test",
            "--so-pin",
            "1234",
            "--pin",
            "5678",
        ])
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[tokio::test]
async fn pkcs11_sealer_round_trips_and_fails_clearly() {
    let env = Env::new();
    if !init_softhsm(env.dir.path()) {
        return;
    }
    let config = || KmsConfig::new(env.data_dir());
    let kms = Kms::builder(config(), &sealer("coffer-test", "5678"))
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap();
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let blob = common::encrypt(&kms, &key.key_id, b"in the token", &ctx(&[]))
        .await
        .unwrap()
        .ciphertext_blob;
    drop(kms);

    // The sealing key in the token is non-extractable and sensitive.
    {
        use cryptoki::context::{CInitializeArgs, Pkcs11};
        use cryptoki::object::{Attribute, AttributeType};
        use cryptoki::session::UserType;
        let p = Pkcs11::new(MODULE).unwrap();
        p.initialize(CInitializeArgs::OsThreads).unwrap();
        let slot = p.get_slots_with_token().unwrap()[0];
        let s = p.open_ro_session(slot).unwrap();
        s.login(
            UserType::User,
            Some(&cryptoki::types::AuthPin::new("5678".into())),
        )
        .unwrap();
        let keys = s
            .find_objects(&[Attribute::Label(b"coffer-root".to_vec())])
            .unwrap();
        assert_eq!(keys.len(), 1);
        let attrs = s
            .get_attributes(
                keys[0],
                &[AttributeType::Extractable, AttributeType::Sensitive],
            )
            .unwrap();
        assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
        assert!(s
            .get_attributes(keys[0], &[AttributeType::Value])
            .map(|v| v.is_empty())
            .unwrap_or(true));
    }

    // Restart with the same token unseals.
    let kms = Kms::builder(config(), &sealer("coffer-test", "5678"))
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap();
    assert!(common::decrypt(&kms, &blob, &ctx(&[]), None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"in the token"));
    drop(kms);

    let before = files(&env.data_dir());
    // Wrong PIN.
    let err = Kms::builder(config(), &sealer("coffer-test", "0000"))
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("login"), "{err}");
    // A token that is not there.
    let err = Kms::builder(config(), &sealer("no-such-token", "5678"))
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no PKCS#11 token labelled"),
        "{err}"
    );
    // The token store removed altogether.
    let tokens = env.dir.path().join("tokens");
    let hidden = env.dir.path().join("tokens-away");
    std::fs::rename(&tokens, &hidden).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    let err = Kms::builder(config(), &sealer("coffer-test", "5678"))
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), "KMSInternalException");
    assert!(
        err.to_string().contains("cannot unseal the root key"),
        "{err}"
    );
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&hidden, &tokens).unwrap();
    assert_eq!(
        files(&env.data_dir()),
        before,
        "failed unseals changed nothing"
    );

    // Move to a passphrase and back to the token.
    Kms::reseal(
        &env.data_dir(),
        &sealer("coffer-test", "5678"),
        &passphrase_sealer("pw"),
    )
    .unwrap();
    let kms = env.open_with_passphrase("pw").await.unwrap();
    assert!(common::decrypt(&kms, &blob, &ctx(&[]), None).await.is_ok());
    drop(kms);
    Kms::reseal(
        &env.data_dir(),
        &passphrase_sealer("pw"),
        &sealer("coffer-test", "5678"),
    )
    .unwrap();
    let kms = Kms::builder(config(), &sealer("coffer-test", "5678"))
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap();
    assert!(common::decrypt(&kms, &blob, &ctx(&[]), None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"in the token"));
}
