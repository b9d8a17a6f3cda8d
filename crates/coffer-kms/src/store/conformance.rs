//! The conformance suite every [`KeyStore`] backend must pass (STYLE.md §7).
//!
//! A backend's tests implement [`Harness`] and call [`run`] inside a multi-threaded Tokio
//! runtime (the concurrency checks spawn tasks that race on the store). A broken rule panics
//! with the rule's name, like any test assertion; an unexpected store error is returned.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use super::{
    GrantConstraints, GrantRecord, KeyRecord, KeyState, KeyStore, Origin, RotationType,
    VersionRecord, GRANT_RECORD_VERSION, KEY_RECORD_VERSION,
};
use crate::error::{KmsError, Result};

/// Gives the suite stores to test.
pub trait Harness {
    /// A new, empty store.
    fn fresh(&mut self) -> Arc<dyn KeyStore>;
    /// The store most recently returned by `fresh`, opened again (a new handle on the same
    /// data, as after a restart); `None` for a backend that does not persist, whose
    /// durability checks are then skipped. The suite drops its old handle right after.
    fn reopen(&mut self) -> Option<Arc<dyn KeyStore>>;
    /// Every key and grant record the most recent store holds, in its stored encoding (JSON).
    fn stored_records(&mut self) -> Vec<String>;
}

/// Runs every check; panics on the first broken rule.
pub async fn run(harness: &mut dyn Harness) -> Result<()> {
    keys_round_trip_and_survive_reopen(harness).await?;
    duplicates_and_missing_are_reported(harness).await?;
    versions_are_ordered_and_atomic(harness).await?;
    aliases_follow_their_rules(harness).await?;
    destroy_and_delete_erase_everything(harness).await?;
    policies_and_grants_follow_their_key(harness).await?;
    stored_records_carry_the_version_marker(harness).await?;
    concurrent_writers_of_one_thing_have_one_winner(harness).await?;
    concurrent_writers_of_different_things_all_land(harness).await?;
    Ok(())
}

/// How many tasks race in the concurrency checks.
const RACERS: usize = 8;

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

fn expect_err<T: Debug>(result: Result<T>, code: &str, rule: &str) {
    match result {
        Err(e) if e.aws_code() == code => {}
        other => panic!("{rule}: expected {code}, got {other:?}"),
    }
}

async fn keys_round_trip_and_survive_reopen(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();
    assert!(
        store.list_keys().await?.is_empty(),
        "a fresh store is empty"
    );
    let mut b = sample_key("b-key");
    let a = sample_key("a-key");
    store
        .create_key(&b, Some(&sample_version("b-key", 1)))
        .await?;
    store.create_key(&a, None).await?;
    assert_eq!(
        store.key("a-key").await?,
        Some(a.clone()),
        "a key reads back as written"
    );
    assert_eq!(
        store.key("nope").await?,
        None,
        "an absent key reads as None"
    );
    let ids: Vec<_> = store.list_keys().await?.into_iter().map(|k| k.id).collect();
    assert_eq!(ids, ["a-key", "b-key"], "list_keys is ordered by id");
    b.state = KeyState::Disabled;
    b.description = "changed".into();
    store.update_key(&b).await?;
    assert_eq!(
        store.key("b-key").await?,
        Some(b.clone()),
        "update_key replaces the record"
    );
    let (store, reopened) = reopen(h, store);
    if reopened {
        assert_eq!(
            store.key("b-key").await?,
            Some(b),
            "updates survive a reopen"
        );
        assert_eq!(
            store.versions("b-key").await?,
            vec![sample_version("b-key", 1)],
            "versions survive a reopen"
        );
    }
    Ok(())
}

/// The store opened again, and whether it was (a backend that does not persist goes on with
/// the handle it had).
fn reopen(h: &mut dyn Harness, store: Arc<dyn KeyStore>) -> (Arc<dyn KeyStore>, bool) {
    match h.reopen() {
        Some(again) => {
            drop(store);
            (again, true)
        }
        None => (store, false),
    }
}

async fn duplicates_and_missing_are_reported(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();
    let k = sample_key("k");
    store.create_key(&k, None).await?;
    expect_err(
        store.create_key(&k, None).await,
        "AlreadyExistsException",
        "duplicate key id",
    );
    expect_err(
        store.update_key(&sample_key("ghost")).await,
        "NotFoundException",
        "update of absent key",
    );
    expect_err(
        store.delete_key("ghost").await,
        "NotFoundException",
        "delete of absent key",
    );
    expect_err(
        store
            .add_version(&sample_key("ghost"), &sample_version("ghost", 1))
            .await,
        "NotFoundException",
        "version for absent key",
    );
    expect_err(
        store.destroy_material(&sample_key("ghost")).await,
        "NotFoundException",
        "destroy_material of absent key",
    );
    assert_eq!(
        store.version("ghost", 1).await?,
        None,
        "a version of an absent key reads as None"
    );
    assert!(
        store.versions("ghost").await?.is_empty(),
        "an absent key has no versions"
    );
    assert_eq!(
        store.alias("alias/ghost").await?,
        None,
        "an absent alias reads as None"
    );
    assert_eq!(
        store.key_policy("ghost").await?,
        None,
        "an absent key has no policy"
    );
    assert!(
        store.grants("ghost").await?.is_empty(),
        "an absent key has no grants"
    );
    assert_eq!(store.grant_by_token_hash("nope").await?, None);
    Ok(())
}

async fn versions_are_ordered_and_atomic(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();
    let mut k = sample_key("k");
    store.create_key(&k, Some(&sample_version("k", 1))).await?;
    for v in [3, 2] {
        k.current_version = v;
        store.add_version(&k, &sample_version("k", v)).await?;
    }
    let versions: Vec<_> = store
        .versions("k")
        .await?
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [1, 2, 3], "versions are ascending");
    assert_eq!(store.version("k", 2).await?, Some(sample_version("k", 2)));
    assert_eq!(store.version("k", 9).await?, None);
    // A duplicate version fails and leaves the key record unchanged (atomicity).
    let mut changed = k.clone();
    changed.description = "must not be written".into();
    expect_err(
        store.add_version(&changed, &sample_version("k", 2)).await,
        "AlreadyExistsException",
        "duplicate version",
    );
    assert_eq!(
        store.key("k").await?,
        Some(k),
        "a failed add_version writes nothing"
    );
    // A failed create writes no version either.
    expect_err(
        store
            .create_key(&sample_key("k"), Some(&sample_version("k", 7)))
            .await,
        "AlreadyExistsException",
        "duplicate create",
    );
    assert_eq!(
        store.version("k", 7).await?,
        None,
        "a failed create_key writes nothing"
    );
    Ok(())
}

async fn aliases_follow_their_rules(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();
    store.create_key(&sample_key("k1"), None).await?;
    store.create_key(&sample_key("k2"), None).await?;
    store.put_alias("alias/b", "k1", false).await?;
    store.put_alias("alias/a", "k2", false).await?;
    expect_err(
        store.put_alias("alias/a", "k1", false).await,
        "AlreadyExistsException",
        "alias exists",
    );
    expect_err(
        store.put_alias("alias/z", "k1", true).await,
        "NotFoundException",
        "update absent alias",
    );
    expect_err(
        store.put_alias("alias/c", "ghost", false).await,
        "NotFoundException",
        "alias to no key",
    );
    expect_err(
        store.put_alias("alias/a", "ghost", true).await,
        "NotFoundException",
        "alias re-pointed to no key",
    );
    store.put_alias("alias/a", "k1", true).await?;
    assert_eq!(
        store.alias("alias/a").await?.as_deref(),
        Some("k1"),
        "update re-points an alias"
    );
    assert_eq!(
        store.list_aliases().await?,
        vec![
            ("alias/a".to_owned(), "k1".to_owned()),
            ("alias/b".to_owned(), "k1".to_owned())
        ],
        "aliases listed by name"
    );
    store.delete_alias("alias/b").await?;
    assert_eq!(store.alias("alias/b").await?, None);
    expect_err(
        store.delete_alias("alias/b").await,
        "NotFoundException",
        "delete absent alias",
    );
    Ok(())
}

async fn destroy_and_delete_erase_everything(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();
    let mut k = sample_key("k");
    store.create_key(&k, Some(&sample_version("k", 1))).await?;
    k.current_version = 2;
    store.add_version(&k, &sample_version("k", 2)).await?;
    store.put_alias("alias/k", "k", false).await?;
    k.state = KeyState::PendingImport;
    k.current_version = 0;
    store.destroy_material(&k).await?;
    assert!(
        store.versions("k").await?.is_empty(),
        "destroy_material removes every version"
    );
    assert_eq!(
        store.key("k").await?,
        Some(k.clone()),
        "destroy_material stores the record"
    );
    store.add_version(&k, &sample_version("k", 1)).await?;
    store.delete_key("k").await?;
    assert_eq!(store.key("k").await?, None, "delete_key removes the key");
    assert!(
        store.versions("k").await?.is_empty(),
        "delete_key removes versions"
    );
    assert_eq!(
        store.alias("alias/k").await?,
        None,
        "delete_key removes aliases"
    );
    let (store, reopened) = reopen(h, store);
    if reopened {
        assert_eq!(store.key("k").await?, None, "deletion is durable");
        assert!(store.versions("k").await?.is_empty(), "erasure is durable");
    }
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

async fn policies_and_grants_follow_their_key(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();
    expect_err(
        store.put_key_policy("k", "{}").await,
        "NotFoundException",
        "policy for an absent key",
    );
    expect_err(
        store.put_grant(&sample_grant("k", "g1", 1)).await,
        "NotFoundException",
        "grant for an absent key",
    );
    store
        .create_key(&sample_key("k"), Some(&sample_version("k", 1)))
        .await?;
    assert_eq!(
        store.key_policy("k").await?,
        None,
        "no policy until one is put"
    );
    store.put_key_policy("k", "{\"v\":1}").await?;
    store.put_key_policy("k", "{\"v\":2}").await?;
    assert_eq!(
        store.key_policy("k").await?.as_deref(),
        Some("{\"v\":2}"),
        "put replaces"
    );
    store.put_grant(&sample_grant("k", "g2", 5)).await?;
    store.put_grant(&sample_grant("k", "g1", 9)).await?;
    store.put_grant(&sample_grant("k", "g0", 9)).await?;
    expect_err(
        store.put_grant(&sample_grant("k", "g1", 9)).await,
        "AlreadyExistsException",
        "duplicate grant id",
    );
    let mut same_token = sample_grant("k", "g3", 10);
    same_token.token_hash = "hash-of-g1".into();
    expect_err(
        store.put_grant(&same_token).await,
        "AlreadyExistsException",
        "duplicate token hash",
    );
    let ids: Vec<String> = store
        .grants("k")
        .await?
        .into_iter()
        .map(|g| g.grant_id)
        .collect();
    assert_eq!(
        ids,
        ["g2", "g0", "g1"],
        "grants ordered by creation time, then grant id"
    );
    expect_err(
        store.delete_grant("other-key", "g2").await,
        "NotFoundException",
        "delete of a grant under another key",
    );
    assert_eq!(
        store.grant_by_token_hash("hash-of-g1").await?,
        Some(sample_grant("k", "g1", 9)),
        "grant found by token hash"
    );
    store.delete_grant("k", "g1").await?;
    expect_err(
        store.delete_grant("k", "g1").await,
        "NotFoundException",
        "delete absent grant",
    );
    assert_eq!(
        store.grants("k").await?.len(),
        2,
        "delete_grant removes one grant"
    );
    let (store, reopened) = reopen(h, store);
    if reopened {
        assert_eq!(store.grants("k").await?.len(), 2, "grants are durable");
        assert!(
            store.key_policy("k").await?.is_some(),
            "policies are durable"
        );
    }
    store.delete_key("k").await?;
    assert_eq!(
        store.key_policy("k").await?,
        None,
        "delete_key removes the policy"
    );
    assert!(
        store.grants("k").await?.is_empty(),
        "delete_key removes grants"
    );
    assert_eq!(store.grant_by_token_hash("hash-of-g2").await?, None);
    Ok(())
}

async fn stored_records_carry_the_version_marker(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();
    store
        .create_key(&sample_key("k"), Some(&sample_version("k", 1)))
        .await?;
    store.put_grant(&sample_grant("k", "g", 1)).await?;
    let records = h.stored_records();
    assert_eq!(
        records.len(),
        2,
        "one key record and one grant record are stored"
    );
    for stored in records {
        let json: serde_json::Value = serde_json::from_str(&stored)
            .map_err(|e| KmsError::Store(format!("stored record is not JSON: {e}")))?;
        let expected = if json.get("grant_id").is_some() {
            GRANT_RECORD_VERSION
        } else {
            KEY_RECORD_VERSION
        };
        assert_eq!(
            json.get("record_version")
                .and_then(serde_json::Value::as_u64),
            Some(u64::from(expected)),
            "a stored record carries its record_version: {stored}"
        );
    }
    drop(store);
    Ok(())
}

/// Runs `RACERS` writers at once; `write(i)` is writer `i`'s attempt. Returns each result.
async fn race<F, Fut>(store: &Arc<dyn KeyStore>, write: F) -> Result<Vec<Result<()>>>
where
    F: Fn(Arc<dyn KeyStore>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let attempt = write(Arc::clone(store), i);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                attempt.await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(
            task.await
                .map_err(|e| KmsError::Internal(format!("racer: {e}")))?,
        );
    }
    Ok(results)
}

/// The index of the one writer that succeeded; every other one got `AlreadyExists`.
fn one_winner(results: Vec<Result<()>>, rule: &str) -> usize {
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(()) => winners.push(i),
            Err(e) if e.aws_code() == "AlreadyExistsException" => {}
            Err(e) => panic!("{rule}: a losing writer got {e:?}, not AlreadyExists"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{rule}: exactly one writer wins, not {winners:?}"
    );
    winners[0]
}

fn writer_key(id: &str, i: usize) -> KeyRecord {
    let mut k = sample_key(id);
    k.description = format!("writer {i}");
    k
}

fn writer_version(key_id: &str, version: u32, i: usize) -> VersionRecord {
    let mut v = sample_version(key_id, version);
    v.wrapped_material = vec![i as u8; 64];
    v
}

async fn concurrent_writers_of_one_thing_have_one_winner(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();

    // One key id: one creator, and the key holds exactly its record and first version.
    let results = race(&store, |s, i| async move {
        s.create_key(&writer_key("race", i), Some(&writer_version("race", 1, i)))
            .await
    })
    .await?;
    let w = one_winner(results, "concurrent create_key of one id");
    assert_eq!(
        store.key("race").await?,
        Some(writer_key("race", w)),
        "the winning creator's record is stored"
    );
    assert_eq!(
        store.versions("race").await?,
        vec![writer_version("race", 1, w)],
        "the winning creator's version is stored, and only it"
    );

    // One version of one key: one writer, whose record update is the one applied.
    let results = race(&store, |s, i| async move {
        let mut k = writer_key("race", i);
        k.current_version = 2;
        s.add_version(&k, &writer_version("race", 2, i)).await
    })
    .await?;
    let w = one_winner(results, "concurrent add_version of one version");
    let mut expected = writer_key("race", w);
    expected.current_version = 2;
    assert_eq!(
        store.key("race").await?,
        Some(expected),
        "the losers' record updates are not applied"
    );
    assert_eq!(
        store.version("race", 2).await?,
        Some(writer_version("race", 2, w)),
        "the winning version is stored"
    );

    // One alias, wanted by several keys.
    for i in 0..RACERS {
        store
            .create_key(&sample_key(&format!("k{i}")), None)
            .await?;
    }
    let results = race(&store, |s, i| async move {
        s.put_alias("alias/race", &format!("k{i}"), false).await
    })
    .await?;
    let w = one_winner(results, "concurrent put_alias of one alias");
    assert_eq!(
        store.alias("alias/race").await?,
        Some(format!("k{w}")),
        "the alias points at the winner's key"
    );

    // One grant id.
    let results = race(&store, |s, i| async move {
        let mut g = sample_grant("race", "g-race", 1);
        g.token_hash = format!("token-{i}");
        s.put_grant(&g).await
    })
    .await?;
    let w = one_winner(results, "concurrent put_grant of one grant id");
    let grants = store.grants("race").await?;
    assert_eq!(grants.len(), 1, "one grant is stored");
    assert_eq!(
        grants[0].token_hash,
        format!("token-{w}"),
        "the winner's grant"
    );
    Ok(())
}

async fn concurrent_writers_of_different_things_all_land(h: &mut dyn Harness) -> Result<()> {
    let store = h.fresh();
    store
        .create_key(&sample_key("k"), Some(&sample_version("k", 1)))
        .await?;
    let results = race(&store, |s, i| async move {
        let id = format!("key-{i}");
        s.create_key(&sample_key(&id), Some(&sample_version(&id, 1)))
            .await?;
        s.put_alias(&format!("alias/{i}"), &id, false).await?;
        let mut g = sample_grant("k", &format!("g{i}"), i as u64);
        g.token_hash = format!("token-{i}");
        s.put_grant(&g).await
    })
    .await?;
    for r in results {
        r?;
    }
    assert_eq!(
        store.list_keys().await?.len(),
        RACERS + 1,
        "no concurrent create_key is lost"
    );
    assert_eq!(
        store.list_aliases().await?.len(),
        RACERS,
        "no concurrent put_alias is lost"
    );
    assert_eq!(
        store.grants("k").await?.len(),
        RACERS,
        "no concurrent put_grant is lost"
    );
    // Versions of one key added one after another by concurrent writers, each with the next
    // number it was given: all land.
    let results = race(&store, |s, i| async move {
        let version = 2 + i as u32;
        let mut k = sample_key("k");
        k.current_version = version;
        s.add_version(&k, &sample_version("k", version)).await
    })
    .await?;
    for r in results {
        r?;
    }
    let versions: Vec<u32> = store
        .versions("k")
        .await?
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(
        versions,
        (1..=RACERS as u32 + 1).collect::<Vec<_>>(),
        "no concurrent add_version is lost"
    );
    Ok(())
}
