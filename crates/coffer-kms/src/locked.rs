//! Key material in locked memory: the root key and cached unwrapped CMK versions live in
//! their own anonymous page, `mlock`ed (never swapped) and marked `MADV_DONTDUMP` (left out
//! of core dumps), wiped before the page is returned. Plus process-wide hardening
//! ([`disable_core_dumps`]).
//!
//! This is the crate's only module with `unsafe`: it calls `mmap`/`mlock`/`madvise`/`munmap`
//! and reads the page through a raw pointer it owns.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use coffer_format::SecretKey;
use zeroize::Zeroize;

use crate::error::{KmsError, Result};

static LOCK_FAILURES: AtomicU64 = AtomicU64::new(0);

/// How many key pages could not be `mlock`ed (usually `RLIMIT_MEMLOCK` too low). Such pages
/// still work, are still excluded from core dumps and still wiped, but may be swapped.
pub fn lock_failures() -> u64 {
    LOCK_FAILURES.load(Ordering::Relaxed)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size <= 0 {
        4096
    } else {
        size as usize
    }
}

/// A 256-bit key in its own locked, non-dumpable page. Not `Clone`, not `Debug`.
pub struct LockedKey {
    page: NonNull<u8>,
    page_len: usize,
    locked: bool,
}

// SAFETY: LockedKey exclusively owns its mapping; the bytes are only read through `&self`
// and written in `new` and `drop`, so sharing or sending it is like sharing a `Box<[u8; 32]>`.
unsafe impl Send for LockedKey {}
// SAFETY: see above; no interior mutability.
unsafe impl Sync for LockedKey {}

impl LockedKey {
    /// Copies `key` into a fresh locked page.
    pub fn new(key: &SecretKey) -> Result<Self> {
        Self::from_bytes(key.expose())
    }

    /// Copies 32 bytes into a fresh locked page; the caller wipes its own copy.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let page_len = page_size();
        // SAFETY: an anonymous private mapping with no address hint; the result is checked
        // against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(KmsError::Internal("mmap of a key page failed".into()));
        }
        let Some(page) = NonNull::new(ptr.cast::<u8>()) else {
            return Err(KmsError::Internal("mmap returned null".into()));
        };
        // SAFETY: `ptr` is a live mapping of `page_len` bytes that we own.
        let locked = unsafe { libc::mlock(ptr, page_len) } == 0;
        if !locked {
            LOCK_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(target_os = "linux")]
        // SAFETY: advice on our own mapping; failure only means the page may be dumped.
        unsafe {
            libc::madvise(ptr, page_len, libc::MADV_DONTDUMP);
        }
        // SAFETY: the mapping is at least one page (≥ 32 bytes), writable, and ours.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), page.as_ptr(), 32);
        }
        Ok(LockedKey {
            page,
            page_len,
            locked,
        })
    }

    /// The key bytes. Copies made from them must be zeroizing (e.g. a [`SecretKey`]).
    pub fn expose(&self) -> &[u8; 32] {
        // SAFETY: the page is mapped, readable, 32+ bytes, page-aligned (so aligned for
        // [u8; 32]) and lives as long as `self`; it is never written while borrowed.
        unsafe { &*self.page.as_ptr().cast::<[u8; 32]>() }
    }

    /// A short-lived zeroizing copy, for APIs that take a [`SecretKey`].
    pub fn to_secret_key(&self) -> SecretKey {
        let mut copy = *self.expose();
        SecretKey::from_bytes(&mut copy)
    }

    /// Whether `mlock` succeeded for this page.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl LockedKey {
    /// The whole page, for the wipe and its test.
    fn page_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is ours, writable, `page_len` bytes long, and `&mut self`
        // guarantees nothing else borrows it.
        unsafe { std::slice::from_raw_parts_mut(self.page.as_ptr(), self.page_len) }
    }

    /// Zeroes the whole page (volatile writes: not optimised away). Drop calls this before
    /// the page is unmapped.
    fn wipe(&mut self) {
        self.page_mut().zeroize();
    }
}

impl Drop for LockedKey {
    fn drop(&mut self) {
        self.wipe();
        // SAFETY: the mapping is ours and `page_len` bytes long; nothing borrows it any more.
        unsafe {
            let ptr = self.page.as_ptr().cast::<libc::c_void>();
            if self.locked {
                libc::munlock(ptr, self.page_len);
            }
            libc::munmap(ptr, self.page_len);
        }
    }
}

/// Hardens the current process for holding keys: no core files (`RLIMIT_CORE` = 0) and, on
/// Linux, not dumpable (`PR_SET_DUMPABLE` = 0, which also blocks ptrace by other users).
/// The server calls this once at start-up.
pub fn disable_core_dumps() -> Result<()> {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid rlimit struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) } != 0 {
        return Err(KmsError::Internal(
            "setrlimit(RLIMIT_CORE, 0) failed".into(),
        ));
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes a plain integer argument.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(KmsError::Internal(
                "prctl(PR_SET_DUMPABLE, 0) failed".into(),
            ));
        }
    }
    Ok(())
}

/// Whether core dumps are disabled for this process for good: `RLIMIT_CORE` soft *and hard*
/// limits are 0 (a soft limit of 0 alone is common, and the process could raise it again).
pub fn core_dumps_disabled() -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 1,
        rlim_max: 1,
    };
    // SAFETY: getrlimit writes into a valid rlimit struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) } == 0;
    ok && limit.rlim_cur == 0 && limit.rlim_max == 0
}

/// Whether the process is dumpable (`PR_GET_DUMPABLE`; Linux). After
/// [`disable_core_dumps`] it is not: no core file, no `ptrace` attach by other users, and
/// `/proc/<pid>/mem` closed to them. Elsewhere: `true` (not known to be protected).
pub fn process_dumpable() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
        (unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }) != 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_key_holds_its_bytes() -> Result<()> {
        let key = SecretKey::generate()?;
        let locked = LockedKey::new(&key)?;
        assert_eq!(locked.expose(), key.expose());
        assert!(locked.to_secret_key().ct_eq(&key));
        Ok(())
    }

    /// The `VmFlags` of the mapping holding `addr`, from `/proc/self/smaps` (Linux).
    fn vm_flags(addr: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.split_whitespace().map(str::to_owned).collect();
                }
            }
        }
        Vec::new()
    }

    /// What the kernel says about a key page: excluded from core dumps (`dd`), and locked
    /// (`lo`) exactly when `mlock` reported success — not what the code believes it asked.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_sees_key_pages_as_locked_and_not_dumpable() -> Result<()> {
        let key = SecretKey::generate()?;
        let locked = LockedKey::new(&key)?;
        let flags = vm_flags(locked.page.as_ptr() as usize);
        assert!(!flags.is_empty(), "the key page is in /proc/self/smaps");
        assert!(flags.iter().any(|f| f == "dd"), "MADV_DONTDUMP: {flags:?}");
        assert_eq!(
            flags.iter().any(|f| f == "lo"),
            locked.is_locked(),
            "mlock: {flags:?}"
        );
        Ok(())
    }

    /// The wipe Drop runs zeroes the whole page, not just the key's 32 bytes.
    #[test]
    fn the_wipe_zeroes_the_whole_page() -> Result<()> {
        let mut locked = LockedKey::from_bytes(&[0xA5; 32])?;
        locked.page_mut()[100] = 0x5A;
        assert!(locked.page_mut().iter().any(|&b| b != 0));
        locked.wipe();
        assert!(locked.page_mut().iter().all(|&b| b == 0));
        assert_eq!(locked.expose(), &[0; 32]);
        Ok(())
    }
}
