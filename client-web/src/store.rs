//! The client core's store in the browser: [`IdbStore`], a [`ClientStore`] over IndexedDB,
//! encrypted at rest exactly as the native sled store is (the shared
//! [`confide_client_core::store::cipher`]).
//!
//! # Layout
//!
//! One IndexedDB database per profile, named by the caller, with two object stores:
//! - `meta`: the KDF parameters, the salt and the passphrase check value, under the keys
//!   `kdf`, `salt` and `check` (the records of the sled store's `meta` tree);
//! - `kv`: every value of the core, under the binary key `utf8(tree) ‖ 0x00 ‖ key`. IndexedDB
//!   orders binary keys bytewise, so a tree's keys are contiguous and in the core's order, and
//!   prefix and range scans are key ranges. A new core tree needs no schema change.
//!
//! Values are `nonce ‖ ChaCha20-Poly1305 ciphertext`, bound to their tree and key. Keys are in
//! the clear (group ids, sequence numbers, device ids), as natively.
//!
//! # Commits
//!
//! A [`Batch`] is sealed first, then written in one `readwrite` transaction with
//! `durability: "strict"` (the browser confirms only once the data is on disk, as the trait
//! promises; Chromium's default may confirm earlier). Every put and delete is issued without
//! yielding between them, because a transaction commits by itself once no request is pending
//! at the end of a task; then the commit waits for `complete`. An abort, a request error or a
//! full quota is [`StoreError::Db`], and IndexedDB guarantees that none of the transaction's
//! writes is kept.
//!
//! Written with `web-sys` directly rather than a wrapper crate: the store needs six IndexedDB
//! calls, a transaction option `web-sys` has only behind an unstable flag (`durability`), and
//! exact control over when requests are issued; a wrapper would add a dozen crates (tokio's
//! sync among them) to the download for less control.

use std::cell::Cell;
use std::rc::Rc;

use confide_client_core::StoreError;
use confide_client_core::store::cipher::{
    self, META_CHECK, META_KDF, META_SALT, META_TREE, StoreKey,
};
use confide_client_core::store::{Batch, ClientStore, Entry};
use confide_protocol::identity::KdfParams;
use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue, prelude::wasm_bindgen};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    DomException, Event, IdbCursorDirection, IdbCursorWithValue, IdbDatabase, IdbFactory,
    IdbKeyRange, IdbObjectStore, IdbOpenDbRequest, IdbRequest, IdbTransaction, IdbTransactionMode,
    IdbVersionChangeEvent,
};
use zeroize::Zeroizing;

/// The schema version of the database: 1 has the object stores [`META_STORE`] and
/// [`KV_STORE`]. Raising it needs an upgrade step in [`open_database`].
const DB_VERSION: u32 = 1;
/// The object store of the KDF parameters, salt and check value (string keys).
const META_STORE: &str = META_TREE;
/// The object store of every value of the core (binary keys `tree ‖ 0 ‖ key`).
const KV_STORE: &str = "kv";
/// Separates the tree from the key in a [`KV_STORE`] key. Tree names never contain it.
const TREE_END: u8 = 0x00;

// `IDBDatabase.transaction(names, mode, options)`: web-sys binds the options argument only
// behind `--cfg web_sys_unstable_apis`, so the store binds this one call itself.
#[wasm_bindgen]
extern "C" {
    /// An `IDBDatabase`, seen through the binding below.
    #[wasm_bindgen(js_name = IDBDatabase)]
    type DatabaseWithOptions;

    /// `transaction(store, mode, options)`.
    #[wasm_bindgen(catch, method, js_name = transaction)]
    fn transaction(
        this: &DatabaseWithOptions,
        store: &str,
        mode: &str,
        options: &Object,
    ) -> Result<IdbTransaction, JsValue>;
}

/// An open, unlocked profile store in IndexedDB. Clones are handles on the same connection;
/// it is closed by [`IdbStore::close`] or when the last handle is dropped.
#[derive(Clone)]
pub struct IdbStore {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for IdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdbStore")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// What the handles of one store share.
struct Inner {
    /// The connection.
    db: IdbDatabase,
    /// The database's name, for messages.
    name: String,
    /// Seals and opens every value; zeroized when the last handle goes.
    key: StoreKey,
    /// Set once the connection is closed, by [`IdbStore::close`] or because another connection
    /// wants the database deleted or upgraded: every call then fails with a plain message
    /// instead of an IndexedDB exception.
    closed: Rc<Cell<bool>>,
    /// Closes this connection when another one asks to delete or upgrade the database (the
    /// `versionchange` event), so that "forget this browser" in one tab is not blocked by
    /// another. Kept alive as long as the connection.
    _on_version_change: Closure<dyn FnMut(IdbVersionChangeEvent)>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

impl IdbStore {
    /// Creates the profile store in the database `name` of this origin, protected by
    /// `passphrase`: a random salt, the key derived with Argon2id under `params`
    /// ([`KdfParams::RECOMMENDED`] for people; tests pass cheap ones), and the check value.
    ///
    /// # Errors
    ///
    /// [`StoreError::State`] if the database already holds a store, or the browser offers no
    /// IndexedDB (some private modes); [`StoreError::Db`] if it cannot be written.
    pub async fn create(
        name: &str,
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<IdbStore, StoreError> {
        let (db, fresh) = open_database(name).await?;
        let made = IdbStore::set_up(db, name, passphrase, params).await;
        if made.is_err() && fresh {
            // Leave no empty database behind (its connection is closed by now).
            let _ = IdbStore::delete_database(name).await;
        }
        made
    }

    /// Writes a new store's records into the open database `db`, unless it holds a store.
    /// On an error the connection is closed.
    async fn set_up(
        db: IdbDatabase,
        name: &str,
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<IdbStore, StoreError> {
        let meta = match read_meta(&db).await {
            Ok(meta) => meta,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        if meta.salt.is_some() {
            db.close();
            return Err(StoreError::State(format!(
                "a Confide profile already exists in this browser (database {name})"
            )));
        }
        let new = match cipher::create(passphrase, params, &mut os_rng()) {
            Ok(new) => new,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        // From here on, dropping the store closes the connection.
        let store = IdbStore::from_parts(db, name, new.key);
        let records = vec![
            (JsValue::from_str(META_KDF), Some(bytes(&new.kdf).into())),
            (JsValue::from_str(META_SALT), Some(bytes(&new.salt).into())),
            (
                JsValue::from_str(META_CHECK),
                Some(bytes(&new.check).into()),
            ),
        ];
        store.write(META_STORE, records, None).await?;
        Ok(store)
    }

    /// Opens the profile store in the database `name` of this origin with its passphrase.
    ///
    /// # Errors
    ///
    /// [`StoreError::WrongPassphrase`] if `passphrase` does not open it;
    /// [`StoreError::State`] if there is no store by that name (nothing is left behind) or no
    /// IndexedDB; [`StoreError::Corrupt`] if its records are damaged; [`StoreError::Db`] if it
    /// cannot be read.
    pub async fn open(name: &str, passphrase: &[u8]) -> Result<IdbStore, StoreError> {
        let (db, fresh) = open_database(name).await?;
        let no_store = || {
            StoreError::State(format!(
                "no Confide profile in this browser (database {name})"
            ))
        };
        if fresh {
            // Opening made an empty database: take it away again.
            db.close();
            let _ = IdbStore::delete_database(name).await;
            return Err(no_store());
        }
        let meta = match read_meta(&db).await {
            Ok(meta) => meta,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        let (Some(kdf), Some(salt), Some(check)) = (meta.kdf, meta.salt, meta.check) else {
            db.close();
            return Err(no_store());
        };
        match cipher::unlock(passphrase, &kdf, &salt, &check) {
            Ok(key) => Ok(IdbStore::from_parts(db, name, key)),
            Err(e) => {
                db.close();
                Err(e)
            }
        }
    }

    /// Deletes the database `name` and everything in it ("forget this browser"). Open
    /// connections of this app close themselves when asked (see `versionchange`); the call
    /// waits until every connection is closed. A database that does not exist is not an error.
    ///
    /// # Errors
    ///
    /// [`StoreError::State`] without IndexedDB; [`StoreError::Db`] if the browser refuses.
    pub async fn delete_database(name: &str) -> Result<(), StoreError> {
        let request = factory()?
            .delete_database(name)
            .map_err(|e| js_error("deleting the database", e))?;
        settle(&request, "deleting the database").await?;
        Ok(())
    }

    /// Whether the database `name` holds a profile store, without opening it (no passphrase):
    /// what the app shows first, "create a profile" or "unlock". Opening a database that did
    /// not exist makes an empty one, which is deleted again at once.
    ///
    /// # Errors
    ///
    /// [`StoreError::State`] without IndexedDB; [`StoreError::Db`] if it cannot be read.
    pub async fn exists(name: &str) -> Result<bool, StoreError> {
        let (db, fresh) = open_database(name).await?;
        if fresh {
            db.close();
            let _ = IdbStore::delete_database(name).await;
            return Ok(false);
        }
        let meta = read_meta(&db).await;
        db.close();
        Ok(meta?.salt.is_some())
    }

    /// Closes the connection for every handle of this store; later calls fail with
    /// [`StoreError::Db`] saying it is closed. The key is zeroized when the last handle goes.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.db.close();
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A store over an open connection, closing it when another connection asks to delete or
    /// upgrade the database.
    fn from_parts(db: IdbDatabase, name: &str, key: StoreKey) -> IdbStore {
        let closed = Rc::new(Cell::new(false));
        let on_version_change = {
            let db = db.clone();
            let closed = closed.clone();
            Closure::<dyn FnMut(IdbVersionChangeEvent)>::new(move |_| {
                closed.set(true);
                db.close();
            })
        };
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        IdbStore {
            inner: Rc::new(Inner {
                db,
                name: name.to_owned(),
                key,
                closed,
                _on_version_change: on_version_change,
            }),
        }
    }

    /// A transaction on `store`, unless the connection is closed.
    fn transaction(
        &self,
        store: &str,
        mode: IdbTransactionMode,
    ) -> Result<(IdbTransaction, IdbObjectStore), StoreError> {
        if self.inner.closed.get() {
            return Err(StoreError::Db(format!(
                "the store {} is closed; unlock it again",
                self.inner.name
            )));
        }
        let tx = if mode == IdbTransactionMode::Readwrite {
            let options = Object::new();
            Reflect::set(&options, &"durability".into(), &"strict".into())
                .map_err(|e| js_error("starting a transaction", e))?;
            self.inner
                .db
                .unchecked_ref::<DatabaseWithOptions>()
                .transaction(store, "readwrite", &options)
        } else {
            self.inner.db.transaction_with_str_and_mode(store, mode)
        }
        .map_err(|e| js_error("starting a transaction", e))?;
        let object_store = tx
            .object_store(store)
            .map_err(|e| js_error("starting a transaction", e))?;
        Ok((tx, object_store))
    }

    /// Writes `writes` (key, value or `None` to delete) into `store` in one readwrite
    /// transaction with strict durability and waits until it is committed. With
    /// `abort_after` (tests only), the transaction is aborted after that many writes.
    async fn write(
        &self,
        store: &str,
        writes: Vec<(JsValue, Option<JsValue>)>,
        abort_after: Option<usize>,
    ) -> Result<(), StoreError> {
        let (tx, object_store) = self.transaction(store, IdbTransactionMode::Readwrite)?;
        let done = TxDone::new(&tx)?;
        // No `.await` from here to `done.wait()`: the transaction must not commit by itself
        // part way.
        for (i, (key, value)) in writes.iter().enumerate() {
            if abort_after == Some(i) {
                let _ = tx.abort();
                return done.wait().await;
            }
            let issued = match value {
                Some(value) => object_store.put_with_key(value, key),
                None => object_store.delete(key),
            };
            if let Err(e) = issued {
                // Nothing of the transaction is kept once it is aborted.
                let _ = tx.abort();
                let _ = done.wait().await;
                return Err(js_error("writing", e));
            }
        }
        if abort_after == Some(writes.len()) {
            let _ = tx.abort();
        }
        done.wait().await
    }

    /// Commits `batch`; see [`IdbStore::write`] for `abort_after`.
    async fn commit_batch(
        &self,
        batch: &Batch,
        abort_after: Option<usize>,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Sealed before the transaction starts: it must not wait on anything but its requests.
        let mut rng = os_rng();
        let mut writes = Vec::with_capacity(batch.len());
        for (tree, key, value) in batch.iter() {
            let value = match value {
                Some(plain) => {
                    Some(bytes(&self.inner.key.seal(tree, key, plain, &mut rng)?).into())
                }
                None => None,
            };
            writes.push((kv_key(tree, key).into(), value));
        }
        self.write(KV_STORE, writes, abort_after).await
    }

    /// The sealed values and keys (without the tree) of `range` in `tree`, in key order, at
    /// most `limit` (which is not 0), from one readonly transaction.
    async fn read_range(
        &self,
        tree: &str,
        range: &IdbKeyRange,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let (_tx, kv) = self.transaction(KV_STORE, IdbTransactionMode::Readonly)?;
        let issued = match u32::try_from(limit) {
            Ok(limit) => kv
                .get_all_keys_with_key_and_limit(range, limit)
                .and_then(|keys| Ok((keys, kv.get_all_with_key_and_limit(range, limit)?))),
            Err(_) => kv
                .get_all_keys_with_key(range)
                .and_then(|keys| Ok((keys, kv.get_all_with_key(range)?))),
        };
        let (keys, values) = issued.map_err(|e| js_error("reading", e))?;
        let keys: Array = settle(&keys, "reading").await?.unchecked_into();
        let values: Array = settle(&values, "reading").await?.unchecked_into();
        if keys.length() != values.length() {
            return Err(StoreError::Db(
                "IndexedDB returned as many keys as values for one range".into(),
            ));
        }
        keys.iter()
            .zip(values.iter())
            .map(|(key, value)| Ok((tree_key(tree, &key)?, sealed_bytes(tree, &key, &value)?)))
            .collect()
    }

    /// Opens sealed (key, value) pairs of `tree`.
    fn open_all(
        &self,
        tree: &str,
        sealed: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<Entry>, StoreError> {
        sealed
            .into_iter()
            .map(|(key, value)| {
                let plain = self.inner.key.open(tree, &key, &value)?;
                Ok((key, plain))
            })
            .collect()
    }
}

/// Test hooks: reach under the cipher, and abort a commit part way. **For tests only**
/// (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
impl IdbStore {
    /// The sealed bytes stored at `tree`/`key`, as IndexedDB holds them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] if it cannot be read.
    pub async fn sealed_value(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let full: JsValue = kv_key(tree, key).into();
        let (_tx, kv) = self.transaction(KV_STORE, IdbTransactionMode::Readonly)?;
        let request = kv.get(&full).map_err(|e| js_error("reading", e))?;
        let value = settle(&request, "reading").await?;
        if value.is_undefined() {
            return Ok(None);
        }
        sealed_bytes(tree, &full, &value).map(Some)
    }

    /// Stores `sealed` at `tree`/`key` as it is, without sealing it: what someone with access
    /// to the browser's files could do.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] if it cannot be written.
    pub async fn put_sealed_value(
        &self,
        tree: &'static str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        let write = (kv_key(tree, key).into(), Some(bytes(sealed).into()));
        self.write(KV_STORE, vec![write], None).await
    }

    /// Commits `batch`, but aborts its transaction after `after` of its writes were issued,
    /// as a failing disk or a closing tab would. Returns the error a commit gives then.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] always, once the transaction is aborted.
    pub async fn commit_aborted_after(&self, batch: Batch, after: usize) -> Result<(), StoreError> {
        self.commit_batch(&batch, Some(after)).await
    }
}

impl ClientStore for IdbStore {
    async fn get(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let full: JsValue = kv_key(tree, key).into();
        let (_tx, kv) = self.transaction(KV_STORE, IdbTransactionMode::Readonly)?;
        let request = kv.get(&full).map_err(|e| js_error("reading", e))?;
        let value = settle(&request, "reading").await?;
        if value.is_undefined() {
            return Ok(None);
        }
        let sealed = sealed_bytes(tree, &full, &value)?;
        self.inner.key.open(tree, key, &sealed).map(Some)
    }

    async fn scan(
        &self,
        tree: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            // IndexedDB reads a count of 0 as "no limit".
            return Ok(Vec::new());
        }
        let sealed = self
            .read_range(tree, &prefix_range(tree, prefix)?, limit)
            .await?;
        self.open_all(tree, sealed)
    }

    async fn scan_range_rev(
        &self,
        tree: &'static str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        // `IDBKeyRange.bound` throws on an inverted or empty half-open range.
        if limit == 0 || start >= end {
            return Ok(Vec::new());
        }
        let range = IdbKeyRange::bound_with_lower_open_and_upper_open(
            &kv_key(tree, start).into(),
            &kv_key(tree, end).into(),
            false,
            true,
        )
        .map_err(|e| js_error("reading", e))?;
        let (_tx, kv) = self.transaction(KV_STORE, IdbTransactionMode::Readonly)?;
        let request = kv
            .open_cursor_with_range_and_direction(&range, IdbCursorDirection::Prev)
            .map_err(|e| js_error("reading", e))?;
        let mut sealed = Vec::new();
        // Each step's result arrives in a success event; the next step is asked for before
        // yielding, so the transaction stays active (promise reactions run before IndexedDB
        // deactivates it).
        loop {
            let result = settle(&request, "reading").await?;
            if result.is_null() {
                break;
            }
            let cursor: IdbCursorWithValue = result.dyn_into().map_err(|_| {
                StoreError::Db("IndexedDB returned something other than a cursor".into())
            })?;
            let key = cursor.key().map_err(|e| js_error("reading", e))?;
            let value = cursor.value().map_err(|e| js_error("reading", e))?;
            sealed.push((tree_key(tree, &key)?, sealed_bytes(tree, &key, &value)?));
            if sealed.len() >= limit {
                break;
            }
            cursor.continue_().map_err(|e| js_error("reading", e))?;
        }
        self.open_all(tree, sealed)
    }

    async fn keys(&self, tree: &'static str, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let range = prefix_range(tree, prefix)?;
        let (_tx, kv) = self.transaction(KV_STORE, IdbTransactionMode::Readonly)?;
        let request = kv
            .get_all_keys_with_key(&range)
            .map_err(|e| js_error("reading", e))?;
        let keys: Array = settle(&request, "reading").await?.unchecked_into();
        keys.iter().map(|key| tree_key(tree, &key)).collect()
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_batch(&batch, None).await
    }
}

/// The operating system's generator: the browser's `crypto.getRandomValues` (getrandom's
/// `wasm_js` backend), which works in windows and workers. `UnwrapErr` panics only if the
/// browser has no Web Crypto at all, where no key could be made safely anyway.
fn os_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// This origin's IndexedDB, in a window or a worker.
fn factory() -> Result<IdbFactory, StoreError> {
    Reflect::get(&js_sys::global(), &"indexedDB".into())
        .ok()
        .and_then(|factory| factory.dyn_into::<IdbFactory>().ok())
        .ok_or_else(|| {
            StoreError::State(
                "this browser offers no IndexedDB here (a private window may turn it off), so \
                 Confide cannot keep a profile"
                    .into(),
            )
        })
}

/// Opens (and on first use creates) the database `name` with its object stores. `true` if
/// it did not exist before.
async fn open_database(name: &str) -> Result<(IdbDatabase, bool), StoreError> {
    let request: IdbOpenDbRequest = factory()?
        .open_with_u32(name, DB_VERSION)
        .map_err(|e| js_error("opening the database", e))?;
    let fresh = Rc::new(Cell::new(false));
    let upgrade_error: Rc<Cell<Option<String>>> = Rc::new(Cell::new(None));
    let on_upgrade = {
        let request = request.clone();
        let fresh = fresh.clone();
        let upgrade_error = upgrade_error.clone();
        Closure::<dyn FnMut(IdbVersionChangeEvent)>::new(move |event: IdbVersionChangeEvent| {
            fresh.set(event.old_version() == 0.0);
            let made = request.result().and_then(|db| {
                let db: IdbDatabase = db.unchecked_into();
                for store in [META_STORE, KV_STORE] {
                    if !db.object_store_names().contains(store) {
                        db.create_object_store(store)?;
                    }
                }
                Ok(())
            });
            if let Err(e) = made {
                upgrade_error.set(Some(exception_text(&e)));
                if let Some(tx) = request.transaction() {
                    let _ = tx.abort();
                }
            }
        })
    };
    request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let opened = settle_raw(&request).await;
    request.set_onupgradeneeded(None);
    drop(on_upgrade);
    if let Some(e) = upgrade_error.take() {
        return Err(StoreError::Db(format!(
            "cannot set up the database {name}: {e}"
        )));
    }
    let db: IdbDatabase = match opened? {
        Ok(db) => db.unchecked_into(),
        Err(Some(e)) if e.name() == "VersionError" => {
            return Err(StoreError::State(format!(
                "the database {name} was written by a newer version of Confide; reload the \
                 page to use the newer version"
            )));
        }
        Err(Some(e)) => return Err(dom_error("opening the database", &e)),
        Err(None) => {
            return Err(StoreError::Db(
                "IndexedDB failed opening the database".into(),
            ));
        }
    };
    Ok((db, fresh.get()))
}

/// The records of the `meta` object store, as far as they exist.
struct Meta {
    kdf: Option<Vec<u8>>,
    salt: Option<Vec<u8>>,
    check: Option<Vec<u8>>,
}

/// Reads the `meta` records in one readonly transaction.
async fn read_meta(db: &IdbDatabase) -> Result<Meta, StoreError> {
    let tx = db
        .transaction_with_str(META_STORE)
        .map_err(|e| js_error("reading the profile's records", e))?;
    let meta = tx
        .object_store(META_STORE)
        .map_err(|e| js_error("reading the profile's records", e))?;
    let mut requests = Vec::new();
    for name in [META_KDF, META_SALT, META_CHECK] {
        requests.push(
            meta.get(&JsValue::from_str(name))
                .map_err(|e| js_error("reading the profile's records", e))?,
        );
    }
    let mut values = Vec::new();
    for (request, name) in requests.iter().zip([META_KDF, META_SALT, META_CHECK]) {
        let value = settle(request, "reading the profile's records").await?;
        values.push(if value.is_undefined() {
            None
        } else {
            Some(buffer_bytes(&value).ok_or_else(|| StoreError::Corrupt {
                tree: META_TREE.into(),
                key: hex::encode(name),
            })?)
        });
    }
    let mut values = values.into_iter();
    Ok(Meta {
        kdf: values.next().flatten(),
        salt: values.next().flatten(),
        check: values.next().flatten(),
    })
}

/// The [`KV_STORE`] key of `tree`/`key`: `utf8(tree) ‖ 0x00 ‖ key`.
fn kv_key(tree: &str, key: &[u8]) -> Uint8Array {
    let mut full = Vec::with_capacity(tree.len() + 1 + key.len());
    full.extend_from_slice(tree.as_bytes());
    full.push(TREE_END);
    full.extend_from_slice(key);
    bytes(&full)
}

/// The keys of `tree` that start with `prefix`: from `tree ‖ 0 ‖ prefix` up to, not including,
/// the first key above all of them. That bound drops the trailing `0xFF` bytes and increments
/// the last byte left; the `0x00` after the tree name is always left, so the bound of a prefix
/// of only `0xFF` bytes (or of none) is `tree ‖ 0x01`, the end of the tree.
fn prefix_range(tree: &str, prefix: &[u8]) -> Result<IdbKeyRange, StoreError> {
    let mut lower = Vec::with_capacity(tree.len() + 1 + prefix.len());
    lower.extend_from_slice(tree.as_bytes());
    lower.push(TREE_END);
    lower.extend_from_slice(prefix);
    let mut upper = lower.clone();
    while upper.last() == Some(&0xFF) {
        upper.pop();
    }
    // Not empty: the TREE_END byte (0x00) is never popped.
    if let Some(last) = upper.last_mut() {
        *last += 1;
    }
    IdbKeyRange::bound_with_lower_open_and_upper_open(
        &bytes(&lower).into(),
        &bytes(&upper).into(),
        false,
        true,
    )
    .map_err(|e| js_error("reading", e))
}

/// `data` copied into a new JavaScript array (never a view of wasm memory, which moves).
fn bytes(data: &[u8]) -> Uint8Array {
    Uint8Array::from(data)
}

/// The bytes of a binary key or value (an `ArrayBuffer` or a `Uint8Array`).
fn buffer_bytes(value: &JsValue) -> Option<Vec<u8>> {
    if let Some(array) = value.dyn_ref::<Uint8Array>() {
        Some(array.to_vec())
    } else {
        value
            .dyn_ref::<ArrayBuffer>()
            .map(|buffer| Uint8Array::new(buffer).to_vec())
    }
}

/// The key within `tree` of a [`KV_STORE`] key IndexedDB returned for a range of `tree`.
fn tree_key(tree: &str, full: &JsValue) -> Result<Vec<u8>, StoreError> {
    let outside = || StoreError::Db("IndexedDB returned a key outside the range asked for".into());
    let full = buffer_bytes(full).ok_or_else(outside)?;
    let head = tree.len() + 1;
    if full.len() < head || &full[..tree.len()] != tree.as_bytes() || full[tree.len()] != TREE_END {
        return Err(outside());
    }
    Ok(full[head..].to_vec())
}

/// The sealed bytes of a stored value; anything but bytes is a damaged value.
fn sealed_bytes(tree: &str, full: &JsValue, value: &JsValue) -> Result<Vec<u8>, StoreError> {
    buffer_bytes(value).ok_or_else(|| {
        let key = buffer_bytes(full)
            .map(|full| full.get(tree.len() + 1..).unwrap_or_default().to_vec())
            .unwrap_or_default();
        StoreError::Corrupt {
            tree: tree.into(),
            key: hex::encode(key),
        }
    })
}

/// A promise and the functions that settle it.
fn deferred() -> Result<(Promise, Function, Function), StoreError> {
    let mut settlers = None;
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        settlers = Some((resolve, reject));
    });
    // `new Promise` runs its executor before it returns.
    let (resolve, reject) =
        settlers.ok_or_else(|| StoreError::Db("the browser did not set up a promise".into()))?;
    Ok((promise, resolve, reject))
}

/// An event handler that calls `settle` (a promise's resolve or reject).
fn settle_on_event(settle: Function) -> Closure<dyn FnMut(Event)> {
    Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        let _ = settle.call0(&JsValue::UNDEFINED);
    })
}

/// Waits for `request` to succeed (`Ok` with its result) or fail (`Err` with the browser's
/// reason, if it gave one). The handlers are removed again when this returns or is dropped.
async fn settle_raw(
    request: &IdbRequest,
) -> Result<Result<JsValue, Option<DomException>>, StoreError> {
    let (promise, resolve, reject) = deferred()?;
    let handlers = RequestHandlers {
        request: request.clone(),
        _on_success: settle_on_event(resolve),
        _on_error: settle_on_event(reject),
    };
    request.set_onsuccess(Some(handlers._on_success.as_ref().unchecked_ref()));
    request.set_onerror(Some(handlers._on_error.as_ref().unchecked_ref()));
    let settled = JsFuture::from(promise).await;
    drop(handlers);
    Ok(match settled {
        Ok(_) => Ok(request.result().unwrap_or(JsValue::UNDEFINED)),
        Err(_) => Err(request.error().ok().flatten()),
    })
}

/// Waits for `request` to succeed (its result) or fail ([`StoreError::Db`] naming `what` and
/// the browser's reason).
async fn settle(request: &IdbRequest, what: &str) -> Result<JsValue, StoreError> {
    settle_raw(request).await?.map_err(|e| match e {
        Some(e) => dom_error(what, &e),
        None => StoreError::Db(format!("IndexedDB failed {what}")),
    })
}

/// A request's event handlers, removed when dropped (a handler left behind would call a
/// dropped closure).
struct RequestHandlers {
    request: IdbRequest,
    _on_success: Closure<dyn FnMut(Event)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl Drop for RequestHandlers {
    fn drop(&mut self) {
        self.request.set_onsuccess(None);
        self.request.set_onerror(None);
    }
}

/// The end of a readwrite transaction: `complete`, or `abort` (which follows any error).
struct TxDone {
    tx: IdbTransaction,
    promise: Promise,
    _on_complete: Closure<dyn FnMut(Event)>,
    _on_abort: Closure<dyn FnMut(Event)>,
}

impl TxDone {
    /// Listens for the end of `tx`; set up before any request is issued.
    fn new(tx: &IdbTransaction) -> Result<TxDone, StoreError> {
        let (promise, resolve, reject) = deferred()?;
        let done = TxDone {
            tx: tx.clone(),
            promise,
            _on_complete: settle_on_event(resolve),
            _on_abort: settle_on_event(reject),
        };
        tx.set_oncomplete(Some(done._on_complete.as_ref().unchecked_ref()));
        tx.set_onabort(Some(done._on_abort.as_ref().unchecked_ref()));
        Ok(done)
    }

    /// Waits for the transaction to end: `Ok` once committed, [`StoreError::Db`] with the
    /// reason once aborted (then none of its writes is kept).
    async fn wait(self) -> Result<(), StoreError> {
        match JsFuture::from(self.promise.clone()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(match self.tx.error() {
                Some(e) => dom_error("committing", &e),
                None => StoreError::Db(
                    "the store transaction was aborted; nothing of it was written".into(),
                ),
            }),
        }
    }
}

impl Drop for TxDone {
    fn drop(&mut self) {
        self.tx.set_oncomplete(None);
        self.tx.set_onabort(None);
    }
}

/// [`StoreError::Db`] for a `DOMException` of IndexedDB while doing `what`, in words a person
/// can act on where there are any.
fn dom_error(what: &str, e: &DomException) -> StoreError {
    let name = e.name();
    if name == "QuotaExceededError" {
        return StoreError::Db(format!(
            "the browser refused to store more while {what} (its storage for this site is \
             full); free space on the device or in the browser's site data, then try again"
        ));
    }
    StoreError::Db(format!("IndexedDB failed {what}: {name}: {}", e.message()))
}

/// [`StoreError::Db`] for an exception thrown by an IndexedDB call while doing `what`.
fn js_error(what: &str, e: JsValue) -> StoreError {
    match e.dyn_ref::<DomException>() {
        Some(dom) => dom_error(what, dom),
        None => StoreError::Db(format!("IndexedDB failed {what}: {}", exception_text(&e))),
    }
}

/// A thrown value as text: a `DOMException`'s or `Error`'s name and message.
fn exception_text(e: &JsValue) -> String {
    if let Some(dom) = e.dyn_ref::<DomException>() {
        return format!("{}: {}", dom.name(), dom.message());
    }
    if let Some(error) = e.dyn_ref::<js_sys::Error>() {
        return format!(
            "{}: {}",
            String::from(error.name()),
            String::from(error.message())
        );
    }
    "an unknown error".into()
}
