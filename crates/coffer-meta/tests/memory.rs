//! The in-memory store passes both conformance suites.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use coffer_meta::conformance::{self, Harness, Stores};
use coffer_meta::MemoryStore;

#[derive(Default)]
struct MemoryHarness {
    current: Option<Arc<MemoryStore>>,
}

impl Harness for MemoryHarness {
    fn fresh(&mut self) -> Stores {
        let store = Arc::new(MemoryStore::new());
        self.current = Some(Arc::clone(&store));
        Stores {
            meta: store.clone(),
            identity: store,
        }
    }

    fn reopen(&mut self) -> Option<Stores> {
        None
    }

    fn stored_records(&mut self) -> Vec<String> {
        self.current.as_ref().unwrap().encoded_records()
    }
}

#[tokio::test]
async fn memory_store_passes_the_meta_suite() {
    conformance::run_meta(&mut MemoryHarness::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_store_passes_the_identity_suite() {
    conformance::run_identity(&mut MemoryHarness::default())
        .await
        .unwrap();
}
