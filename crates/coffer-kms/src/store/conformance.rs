//! The conformance suite every [`KeyStore`] backend must pass (STYLE.md §7).
//!
//! A backend's tests implement [`Harness`] and call [`run`]; a failed check panics with the
//! rule it broke, like any test assertion.

use std::collections::BTreeMap;

use super::{
    GrantConstraints, GrantRecord, KeyRecord, KeyState, KeyStore, Origin, RotationType,
    VersionRecord,
};
use crate::error::Result;

/// Gives the suite stores to test.
pub trait Harness {
    /// A new, empty store.
    fn fresh(&mut self) -> Box<dyn KeyStore>;
    /// The store most recently returned by `fresh`, closed and opened again (durability).
    /// The suite drops its handle before calling this.
    fn reopen(&mut self) -> Box<dyn KeyStore>;
}

/// Runs every check; panics on the first failure.
pub fn run(harness: &mut dyn Harness) -> Result<()> {
    keys_round_trip_and_survive_reopen(harness)?;
    duplicates_and_missing_are_reported(harness)?;
    versions_are_ordered_and_atomic(harness)?;
    aliases_follow_their_rules(harness)?;
    destroy_and_delete_erase_everything(harness)?;
    policies_and_grants_follow_their_key(harness)?;
    Ok(())
}

/// A sample key record.
pub fn sample_key(id: &str) -> KeyRecord {
    KeyRecord {
        record_version: super::KEY_RECORD_VERSION,
        id: id.to_owned(),
        owner: "user/alice".into(),
        description: "test key".into(),
        tags: BTreeMap::from([("team".to_owned(), "storage".to_owned())]),
        created_at: 1_700_000_000,
        state: KeyState::Enabled,
        origin: Origin::Generated,
        current_version: 1,
        min_decryption_version: 1,
        rotation_period_days: None,
        next_rotation_at: None,
        deletion_at: None,
        material_expires_at: None,
        material_fingerprint: None,
    }
}

/// A sample version record with recognisable bytes.
pub fn sample_version(key_id: &str, version: u32) -> VersionRecord {
    VersionRecord {
        key_id: key_id.to_owned(),
        version,
        created_at: 1_700_000_000 + u64::from(version),
        rotation_type: (version > 1).then_some(RotationType::OnDemand),
        wrapped_material: vec![version as u8; 64],
    }
}

fn expect_err(result: Result<()>, code: &str, rule: &str) {
    match result {
        Err(e) if e.aws_code() == code => {}
        other => panic!("{rule}: expected {code}, got {other:?}"),
    }
}

fn keys_round_trip_and_survive_reopen(h: &mut dyn Harness) -> Result<()> {
    let mut store = h.fresh();
    assert!(store.list_keys()?.is_empty(), "a fresh store is empty");
    let mut b = sample_key("b-key");
    let a = sample_key("a-key");
    store.create_key(&b, Some(&sample_version("b-key", 1)))?;
    store.create_key(&a, None)?;
    assert_eq!(
        store.key("a-key")?,
        Some(a.clone()),
        "a key reads back as written"
    );
    assert_eq!(store.key("nope")?, None, "an absent key reads as None");
    let ids: Vec<_> = store.list_keys()?.into_iter().map(|k| k.id).collect();
    assert_eq!(ids, ["a-key", "b-key"], "list_keys is ordered by id");
    b.state = KeyState::Disabled;
    b.description = "changed".into();
    store.update_key(&b)?;
    drop(store);
    let store = h.reopen();
    assert_eq!(store.key("b-key")?, Some(b), "updates survive a reopen");
    assert_eq!(store.versions("b-key")?, vec![sample_version("b-key", 1)]);
    Ok(())
}

fn duplicates_and_missing_are_reported(h: &mut dyn Harness) -> Result<()> {
    let mut store = h.fresh();
    let k = sample_key("k");
    store.create_key(&k, None)?;
    expect_err(
        store.create_key(&k, None),
        "AlreadyExistsException",
        "duplicate key id",
    );
    expect_err(
        store.update_key(&sample_key("ghost")),
        "NotFoundException",
        "update of absent key",
    );
    expect_err(
        store.delete_key("ghost"),
        "NotFoundException",
        "delete of absent key",
    );
    expect_err(
        store.add_version(&sample_key("ghost"), &sample_version("ghost", 1)),
        "NotFoundException",
        "version for absent key",
    );
    Ok(())
}

fn versions_are_ordered_and_atomic(h: &mut dyn Harness) -> Result<()> {
    let mut store = h.fresh();
    let mut k = sample_key("k");
    store.create_key(&k, Some(&sample_version("k", 1)))?;
    for v in [3, 2] {
        k.current_version = v;
        store.add_version(&k, &sample_version("k", v))?;
    }
    let versions: Vec<_> = store
        .versions("k")?
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [1, 2, 3], "versions are ascending");
    assert_eq!(store.version("k", 2)?, Some(sample_version("k", 2)));
    assert_eq!(store.version("k", 9)?, None);
    // A duplicate version fails and leaves the key record unchanged (atomicity).
    let mut changed = k.clone();
    changed.description = "must not be written".into();
    expect_err(
        store.add_version(&changed, &sample_version("k", 2)),
        "AlreadyExistsException",
        "duplicate version",
    );
    assert_eq!(
        store.key("k")?,
        Some(k),
        "a failed add_version writes nothing"
    );
    // A failed create writes no version either.
    expect_err(
        store.create_key(&sample_key("k"), Some(&sample_version("k", 7))),
        "AlreadyExistsException",
        "duplicate create",
    );
    assert_eq!(
        store.version("k", 7)?,
        None,
        "a failed create_key writes nothing"
    );
    Ok(())
}

fn aliases_follow_their_rules(h: &mut dyn Harness) -> Result<()> {
    let mut store = h.fresh();
    store.create_key(&sample_key("k1"), None)?;
    store.create_key(&sample_key("k2"), None)?;
    store.put_alias("alias/b", "k1", false)?;
    store.put_alias("alias/a", "k2", false)?;
    expect_err(
        store.put_alias("alias/a", "k1", false),
        "AlreadyExistsException",
        "alias exists",
    );
    expect_err(
        store.put_alias("alias/z", "k1", true),
        "NotFoundException",
        "update absent alias",
    );
    expect_err(
        store.put_alias("alias/c", "ghost", false),
        "NotFoundException",
        "alias to no key",
    );
    store.put_alias("alias/a", "k1", true)?;
    assert_eq!(
        store.alias("alias/a")?.as_deref(),
        Some("k1"),
        "update re-points an alias"
    );
    assert_eq!(
        store.list_aliases()?,
        vec![
            ("alias/a".to_owned(), "k1".to_owned()),
            ("alias/b".to_owned(), "k1".to_owned())
        ],
        "aliases listed by name"
    );
    store.delete_alias("alias/b")?;
    assert_eq!(store.alias("alias/b")?, None);
    expect_err(
        store.delete_alias("alias/b"),
        "NotFoundException",
        "delete absent alias",
    );
    Ok(())
}

fn destroy_and_delete_erase_everything(h: &mut dyn Harness) -> Result<()> {
    let mut store = h.fresh();
    let mut k = sample_key("k");
    store.create_key(&k, Some(&sample_version("k", 1)))?;
    k.current_version = 2;
    store.add_version(&k, &sample_version("k", 2))?;
    store.put_alias("alias/k", "k", false)?;
    k.state = KeyState::PendingImport;
    k.current_version = 0;
    store.destroy_material(&k)?;
    assert!(
        store.versions("k")?.is_empty(),
        "destroy_material removes every version"
    );
    assert_eq!(
        store.key("k")?,
        Some(k.clone()),
        "destroy_material stores the record"
    );
    store.add_version(&k, &sample_version("k", 1))?;
    store.delete_key("k")?;
    assert_eq!(store.key("k")?, None, "delete_key removes the key");
    assert!(
        store.versions("k")?.is_empty(),
        "delete_key removes versions"
    );
    assert_eq!(store.alias("alias/k")?, None, "delete_key removes aliases");
    drop(store);
    let store = h.reopen();
    assert_eq!(store.key("k")?, None, "deletion is durable");
    Ok(())
}

/// A sample grant on `key_id`.
pub fn sample_grant(key_id: &str, grant_id: &str, created_at: u64) -> GrantRecord {
    GrantRecord {
        record_version: super::GRANT_RECORD_VERSION,
        grant_id: grant_id.to_owned(),
        token_hash: format!("hash-of-{grant_id}"),
        key_id: key_id.to_owned(),
        grantee_principal: "arn:aws:iam::000000000000:user/bob".into(),
        retiring_principal: None,
        issuer: "arn:aws:iam::000000000000:user/alice".into(),
        operations: vec!["Decrypt".into()],
        constraints: Some(GrantConstraints {
            encryption_context_equals: None,
            encryption_context_subset: Some(BTreeMap::from([("a".into(), "1".into())])),
        }),
        name: None,
        created_at,
    }
}

fn policies_and_grants_follow_their_key(h: &mut dyn Harness) -> Result<()> {
    let mut store = h.fresh();
    expect_err(
        store.put_key_policy("k", "{}"),
        "NotFoundException",
        "policy for an absent key",
    );
    expect_err(
        store.put_grant(&sample_grant("k", "g1", 1)),
        "NotFoundException",
        "grant for an absent key",
    );
    store.create_key(&sample_key("k"), Some(&sample_version("k", 1)))?;
    assert_eq!(store.key_policy("k")?, None, "no policy until one is put");
    store.put_key_policy("k", "{\"v\":1}")?;
    store.put_key_policy("k", "{\"v\":2}")?;
    assert_eq!(
        store.key_policy("k")?.as_deref(),
        Some("{\"v\":2}"),
        "put replaces"
    );
    store.put_grant(&sample_grant("k", "g2", 5))?;
    store.put_grant(&sample_grant("k", "g1", 9))?;
    expect_err(
        store.put_grant(&sample_grant("k", "g1", 9)),
        "AlreadyExistsException",
        "duplicate grant id",
    );
    let ids: Vec<String> = store.grants("k")?.into_iter().map(|g| g.grant_id).collect();
    assert_eq!(ids, ["g2", "g1"], "grants ordered by creation time");
    assert_eq!(
        store.grant_by_token_hash("hash-of-g1")?,
        Some(sample_grant("k", "g1", 9)),
        "grant found by token hash"
    );
    store.delete_grant("k", "g1")?;
    expect_err(
        store.delete_grant("k", "g1"),
        "NotFoundException",
        "delete absent grant",
    );
    drop(store);
    let mut store = h.reopen();
    assert_eq!(store.grants("k")?.len(), 1, "grants are durable");
    assert!(store.key_policy("k")?.is_some(), "policies are durable");
    store.delete_key("k")?;
    assert_eq!(
        store.key_policy("k")?,
        None,
        "delete_key removes the policy"
    );
    assert!(store.grants("k")?.is_empty(), "delete_key removes grants");
    assert_eq!(store.grant_by_token_hash("hash-of-g2")?, None);
    Ok(())
}
