//! Data-in-use hygiene helpers, as the process sees them (the key-page checks against the
//! kernel's view — `/proc/self/smaps` flags, the wipe — are unit tests in `src/locked.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_format::SecretKey;
use coffer_kms::locked::{
    core_dumps_disabled, disable_core_dumps, lock_failures, process_dumpable, LockedKey,
};

/// Before: a test process is dumpable and its hard core limit is not 0 (this machine's is
/// unlimited; where it is already 0 the first half cannot tell, so it only requires the
/// state after). After: not dumpable, both limits 0.
#[test]
fn core_dumps_can_be_disabled() {
    #[cfg(target_os = "linux")]
    assert!(process_dumpable(), "a fresh test process is dumpable");
    disable_core_dumps().unwrap();
    assert!(core_dumps_disabled(), "RLIMIT_CORE soft and hard are 0");
    #[cfg(target_os = "linux")]
    assert!(!process_dumpable(), "PR_SET_DUMPABLE took effect");
}

#[test]
fn key_pages_hold_their_keys_and_count_lock_failures() {
    let before = lock_failures();
    let key = SecretKey::generate().unwrap();
    let locked = LockedKey::new(&key).unwrap();
    assert_eq!(locked.expose(), key.expose());
    // mlock may be refused by a low RLIMIT_MEMLOCK; then the failure is counted, not hidden.
    assert_eq!(locked.is_locked(), lock_failures() == before);
    let many: Vec<_> = (0..64).map(|_| LockedKey::new(&key).unwrap()).collect();
    assert!(many.iter().all(|k| k.expose() == key.expose()));
}
