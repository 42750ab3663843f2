//! The client core's encrypted store in a real browser: [`IdbStore`] over the page's IndexedDB
//! in headless Chromium (`cargo xtask test` runs it).
//!
//! It passes the same conformance suite as the in-memory and the native sled store
//! (`confide_client_core::store::conformance`), and what only a store on disk can get wrong:
//! a wrong passphrase is refused, a sealed value moved to another key does not open, a commit
//! aborted part way leaves nothing, a profile that is not there is not made by looking for it,
//! and "forget this browser" deletes the database even while the store is open.

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_client_core::store::conformance::{self, StoreFactory, TornCommit};
use confide_client_core::{Batch, ClientStore, StoreError};
use confide_client_web::IdbStore;
use confide_protocol::identity::KdfParams;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use zeroize::Zeroizing;

wasm_bindgen_test_configure!(run_in_browser);

const PASSPHRASE: &[u8] = b"a passphrase for the tests";

/// A fresh store named `name` (an earlier run's database of that name is deleted first).
async fn fresh(name: &str) -> IdbStore {
    IdbStore::delete_database(name).await.unwrap();
    IdbStore::create(name, PASSPHRASE, KdfParams::INSECURE_FOR_TESTS)
        .await
        .unwrap()
}

fn value(text: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(text.as_bytes().to_vec())
}

/// Makes IndexedDB stores for the conformance suite, each in its own database.
struct Idb {
    /// Names this factory's databases, so that tests do not share one.
    prefix: &'static str,
    /// How many stores were made, to name the next one.
    made: usize,
}

impl StoreFactory for Idb {
    type Store = IdbStore;

    async fn create(&mut self) -> Result<IdbStore, StoreError> {
        self.made += 1;
        let name = format!("{}-{}", self.prefix, self.made);
        IdbStore::delete_database(&name).await?;
        IdbStore::create(&name, PASSPHRASE, KdfParams::INSECURE_FOR_TESTS).await
    }

    async fn reopen(&mut self, store: IdbStore) -> Result<IdbStore, StoreError> {
        let name = store.name().to_owned();
        store.close();
        drop(store);
        IdbStore::open(&name, PASSPHRASE).await
    }
}

impl TornCommit for Idb {
    async fn commit_torn(
        &mut self,
        store: &IdbStore,
        batch: Batch,
        after: usize,
    ) -> Result<(), StoreError> {
        store.commit_aborted_after(batch, after).await
    }
}

#[wasm_bindgen_test]
async fn the_indexeddb_store_passes_the_store_conformance_suite() {
    let mut factory = Idb {
        prefix: "conformance",
        made: 0,
    };
    conformance::run_all(&mut factory).await.unwrap();
}

#[wasm_bindgen_test]
async fn an_indexeddb_commit_aborted_part_way_leaves_none_of_its_writes() {
    let mut factory = Idb {
        prefix: "torn",
        made: 0,
    };
    conformance::a_commit_that_fails_part_way_leaves_none_of_its_writes(&mut factory)
        .await
        .unwrap();
}

#[wasm_bindgen_test]
async fn a_wrong_passphrase_is_refused_and_the_right_one_opens_the_values() {
    let store = fresh("passphrase").await;
    let mut batch = Batch::new();
    batch.put("messages", b"m1", value("only for the group"));
    store.commit(batch).await.unwrap();
    store.close();

    let wrong = IdbStore::open("passphrase", b"a passphrase for the test").await;
    assert!(
        matches!(wrong, Err(StoreError::WrongPassphrase)),
        "{wrong:?}"
    );
    let store = IdbStore::open("passphrase", PASSPHRASE).await.unwrap();
    assert_eq!(
        store
            .get("messages", b"m1")
            .await
            .unwrap()
            .unwrap()
            .as_slice(),
        b"only for the group"
    );
    // At rest the value is sealed: nothing of the text is in the stored bytes.
    let sealed = store
        .sealed_value("messages", b"m1")
        .await
        .unwrap()
        .unwrap();
    assert!(!sealed.windows(5).any(|w| w == b"group"));
    assert_eq!(sealed.len(), 12 + "only for the group".len() + 16);
}

#[wasm_bindgen_test]
async fn a_sealed_value_moved_to_another_key_or_tree_is_refused_as_corrupt() {
    let store = fresh("moved").await;
    let mut batch = Batch::new();
    batch.put("messages", b"m1", value("I said this"));
    batch.put("messages", b"m2", value("someone else said this"));
    store.commit(batch).await.unwrap();

    let sealed = store
        .sealed_value("messages", b"m1")
        .await
        .unwrap()
        .unwrap();
    store
        .put_sealed_value("messages", b"m2", &sealed)
        .await
        .unwrap();
    store
        .put_sealed_value("groups", b"m1", &sealed)
        .await
        .unwrap();
    match store.get("messages", b"m2").await {
        Err(StoreError::Corrupt { tree, key }) => {
            assert_eq!(tree, "messages");
            assert_eq!(key, hex_of(b"m2"));
        }
        other => panic!("a value moved to another key was read: {other:?}"),
    }
    assert!(matches!(
        store.get("groups", b"m1").await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.scan("messages", b"m", 10).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.scan_range_rev("messages", b"m", b"n", 10).await,
        Err(StoreError::Corrupt { .. })
    ));
    // The value at its own place still opens.
    assert_eq!(
        store
            .get("messages", b"m1")
            .await
            .unwrap()
            .unwrap()
            .as_slice(),
        b"I said this"
    );
    // A value cut short, or not bytes at all, is damaged too.
    store
        .put_sealed_value("messages", b"m3", &sealed[..8])
        .await
        .unwrap();
    assert!(matches!(
        store.get("messages", b"m3").await,
        Err(StoreError::Corrupt { .. })
    ));
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names of this origin's IndexedDB databases (`indexedDB.databases()`).
async fn databases() -> Vec<String> {
    use wasm_bindgen::JsCast as _;
    let factory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into()).unwrap();
    let list: js_sys::Function = js_sys::Reflect::get(&factory, &"databases".into())
        .unwrap()
        .unchecked_into();
    let promise: js_sys::Promise = list.call0(&factory).unwrap().unchecked_into();
    let infos: js_sys::Array = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .unwrap()
        .unchecked_into();
    infos
        .iter()
        .map(|info| {
            js_sys::Reflect::get(&info, &"name".into())
                .unwrap()
                .as_string()
                .unwrap()
        })
        .collect()
}

#[wasm_bindgen_test]
async fn opening_a_profile_that_is_not_there_says_so_and_leaves_nothing_behind() {
    IdbStore::delete_database("absent").await.unwrap();
    for _ in 0..2 {
        let opened = IdbStore::open("absent", PASSPHRASE).await;
        assert!(matches!(opened, Err(StoreError::State(_))), "{opened:?}");
        assert!(
            !databases().await.contains(&"absent".to_string()),
            "looking for a profile made a database"
        );
    }
    // A profile whose key cannot be derived is not made, and leaves no database either.
    let refused = KdfParams {
        m_kib: KdfParams::MAX_M_KIB + 1,
        ..KdfParams::INSECURE_FOR_TESTS
    };
    let made = IdbStore::create("absent", PASSPHRASE, refused).await;
    assert!(matches!(made, Err(StoreError::State(_))), "{made:?}");
    assert!(!databases().await.contains(&"absent".to_string()));
    // Not half made: it can be created, once.
    let store = IdbStore::create("absent", PASSPHRASE, KdfParams::INSECURE_FOR_TESTS)
        .await
        .unwrap();
    assert!(databases().await.contains(&"absent".to_string()));
    let again = IdbStore::create("absent", b"another", KdfParams::INSECURE_FOR_TESTS).await;
    assert!(matches!(again, Err(StoreError::State(_))), "{again:?}");
    // The refused second create changed nothing: the first passphrase still opens it.
    store.close();
    IdbStore::open("absent", PASSPHRASE).await.unwrap();
}

#[wasm_bindgen_test]
async fn forgetting_the_browser_deletes_the_profile_even_while_it_is_open() {
    let store = fresh("forget").await;
    let mut batch = Batch::new();
    batch.put("messages", b"m1", value("to be forgotten"));
    store.commit(batch).await.unwrap();
    let other_handle = IdbStore::open("forget", PASSPHRASE).await.unwrap();

    // Both connections are open; each closes itself when the deletion asks.
    IdbStore::delete_database("forget").await.unwrap();
    let gone = IdbStore::open("forget", PASSPHRASE).await;
    assert!(matches!(gone, Err(StoreError::State(_))), "{gone:?}");
    for handle in [&store, &other_handle] {
        let read = handle.get("messages", b"m1").await;
        assert!(matches!(read, Err(StoreError::Db(_))), "{read:?}");
    }
}

#[wasm_bindgen_test]
async fn a_closed_store_refuses_reads_and_writes_with_a_plain_error() {
    let store = fresh("closed").await;
    let handle = store.clone();
    store.close();
    match handle.get("messages", b"m1").await {
        Err(StoreError::Db(message)) => assert!(message.contains("closed"), "{message}"),
        other => panic!("a closed store answered: {other:?}"),
    }
    let mut batch = Batch::new();
    batch.put("messages", b"m1", value("after closing"));
    assert!(matches!(handle.commit(batch).await, Err(StoreError::Db(_))));
}
