//! Data-in-use hygiene helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_format::SecretKey;
use coffer_kms::locked::{core_dumps_disabled, disable_core_dumps, lock_failures, LockedKey};

#[test]
fn core_dumps_can_be_disabled() {
    disable_core_dumps().unwrap();
    assert!(core_dumps_disabled());
    // Not dumpable any more (Linux): /proc/self/status is still readable by ourselves.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    assert!(!status.is_empty());
}

#[test]
fn key_pages_are_locked_and_wiped_copies_match() {
    let before = lock_failures();
    let key = SecretKey::generate().unwrap();
    let locked = LockedKey::new(&key).unwrap();
    assert_eq!(locked.expose(), key.expose());
    // mlock may be refused by a low RLIMIT_MEMLOCK; then the failure is counted, not hidden.
    assert_eq!(locked.is_locked(), lock_failures() == before);
    let many: Vec<_> = (0..64).map(|_| LockedKey::new(&key).unwrap()).collect();
    assert!(many.iter().all(|k| k.expose() == key.expose()));
}
