//! What every [`ClientStore`] backend must do, as a suite each backend's tests run: the
//! in-memory store and the native sled store natively, the IndexedDB store in a browser. **For
//! tests only** (feature `test-hooks`).
//!
//! A backend's test hands the suite a [`StoreFactory`], which makes empty stores and reopens
//! them, and calls [`run_all`]; a backend that can be made to fail part way through a commit
//! also implements [`TornCommit`] and calls [`a_commit_that_fails_part_way_leaves_none_of_its_writes`].
//! Each check makes its own stores. A failed check panics, naming what a person would notice
//! (as a test's assertion does); store errors are returned.
//!
//! The edge cases are the ones a backend with another key order or range API gets wrong: keys
//! and prefixes of `0xFF` bytes (whose prefix has no simple upper bound), a limit of zero,
//! trees whose names are prefixes of each other, empty keys and values, exclusive range ends.

use std::future::Future;

use zeroize::Zeroizing;

use crate::StoreError;
use crate::store::{Batch, ClientStore, Entry};

/// A tree for the checks.
const TREE: &str = "conformance";
/// A tree whose name starts with [`TREE`]'s: its entries must never show in [`TREE`].
const TREE_LONGER: &str = "conformance2";
/// A third tree, ordered before the others.
const TREE_OTHER: &str = "another";
/// A tree written only after a store is reopened.
const TREE_LATER: &str = "later";

/// Makes the stores a check runs on.
pub trait StoreFactory {
    /// The backend under test.
    type Store: ClientStore;

    /// A new, empty store.
    fn create(&mut self) -> impl Future<Output = Result<Self::Store, StoreError>>;

    /// Closes `store` and opens it again, as a restart would find it.
    fn reopen(
        &mut self,
        store: Self::Store,
    ) -> impl Future<Output = Result<Self::Store, StoreError>>;
}

/// A backend whose commit can be made to fail part way, for
/// [`a_commit_that_fails_part_way_leaves_none_of_its_writes`].
pub trait TornCommit: StoreFactory {
    /// Commits `batch` to `store` but gives up (fails) after `after` of its writes reached the
    /// backend, as a crash, a full disk or an aborted transaction would.
    fn commit_torn(
        &mut self,
        store: &Self::Store,
        batch: Batch,
        after: usize,
    ) -> impl Future<Output = Result<(), StoreError>>;
}

/// Every check of the suite but [`a_commit_that_fails_part_way_leaves_none_of_its_writes`].
///
/// # Errors
///
/// The first store error a check met.
pub async fn run_all<F: StoreFactory>(factory: &mut F) -> Result<(), StoreError> {
    gets_see_committed_values_and_the_last_write_wins(factory).await?;
    trees_are_separate_even_when_one_name_starts_with_another(factory).await?;
    scans_return_a_prefix_in_key_order_up_to_the_limit(factory).await?;
    prefixes_of_ff_bytes_scan_exactly_their_keys(factory).await?;
    reverse_range_scans_return_the_highest_keys_first_within_the_range(factory).await?;
    keys_list_a_prefix_in_order(factory).await?;
    removals_hide_values_from_every_read(factory).await?;
    a_commit_over_several_trees_is_seen_whole(factory).await?;
    a_reopened_store_holds_exactly_what_was_committed(factory).await?;
    Ok(())
}

fn value(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(bytes.to_vec())
}

/// Commits `puts` into `tree` of `store`, one batch.
async fn put_all<S: ClientStore>(
    store: &S,
    tree: &'static str,
    puts: &[(&[u8], &[u8])],
) -> Result<(), StoreError> {
    let mut batch = Batch::new();
    for (key, v) in puts {
        batch.put(tree, key, value(v));
    }
    store.commit(batch).await
}

/// Bytes as escaped text (`\xff`), so that a failed check prints what it compared readably.
fn shown(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// A key and its value as [`shown`].
type Pair = (String, String);

/// Scan results as [`Pair`]s, to compare.
fn plain(entries: Vec<Entry>) -> Vec<Pair> {
    entries
        .into_iter()
        .map(|(k, v)| (shown(&k), shown(&v)))
        .collect()
}

/// Expected pairs from literals.
fn pairs(list: &[(&[u8], &[u8])]) -> Vec<Pair> {
    list.iter().map(|(k, v)| (shown(k), shown(v))).collect()
}

/// The keys of expected or found pairs.
fn keys_of(list: &[Pair]) -> Vec<String> {
    list.iter().map(|(k, _)| k.clone()).collect()
}

/// Keys as `keys` returns them, [`shown`].
fn shown_keys(keys: Vec<Vec<u8>>) -> Vec<String> {
    keys.iter().map(|k| shown(k)).collect()
}

/// Expected keys from literals, [`shown`].
fn key_list(keys: &[&[u8]]) -> Vec<String> {
    keys.iter().map(|k| shown(k)).collect()
}

async fn get<S: ClientStore>(
    store: &S,
    tree: &'static str,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(store.get(tree, key).await?.map(|v| v.to_vec()))
}

/// A value reads back as written; a key never written reads as nothing; a second commit of a
/// key replaces its value; empty keys and values, and large values, are values like others.
///
/// # Errors
///
/// The first store error met.
pub async fn gets_see_committed_values_and_the_last_write_wins<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    assert_eq!(
        get(&store, TREE, b"k").await?,
        None,
        "an empty store has a value"
    );
    let large = vec![0x5a; 64 * 1024];
    put_all(
        &store,
        TREE,
        &[
            (b"k", b"first"),
            (b"", b"empty key"),
            (b"empty", b""),
            (b"large", &large),
        ],
    )
    .await?;
    assert_eq!(
        get(&store, TREE, b"k").await?.as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        get(&store, TREE, b"").await?.as_deref(),
        Some(&b"empty key"[..])
    );
    assert_eq!(
        get(&store, TREE, b"empty").await?.as_deref(),
        Some(&b""[..]),
        "an empty value reads as missing"
    );
    assert_eq!(get(&store, TREE, b"large").await?, Some(large));
    assert_eq!(
        get(&store, TREE, b"k2").await?,
        None,
        "a key never written has a value"
    );
    assert_eq!(
        get(&store, TREE, b"K").await?,
        None,
        "keys were compared ignoring case"
    );

    put_all(&store, TREE, &[(b"k", b"second")]).await?;
    assert_eq!(
        get(&store, TREE, b"k").await?.as_deref(),
        Some(&b"second"[..]),
        "a later commit did not replace the value"
    );
    // Within one batch too (the batch keeps the last write of a key).
    let mut batch = Batch::new();
    batch.put(TREE, b"k", value(b"third"));
    batch.put(TREE, b"k", value(b"fourth"));
    store.commit(batch).await?;
    assert_eq!(
        get(&store, TREE, b"k").await?.as_deref(),
        Some(&b"fourth"[..])
    );
    // An empty batch commits and changes nothing.
    store.commit(Batch::new()).await?;
    assert_eq!(
        get(&store, TREE, b"k").await?.as_deref(),
        Some(&b"fourth"[..])
    );
    Ok(())
}

/// The same key in different trees holds different values, and no read of a tree shows
/// another's entries, even when the other's name starts with this one's.
///
/// # Errors
///
/// The first store error met.
pub async fn trees_are_separate_even_when_one_name_starts_with_another<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    let mut batch = Batch::new();
    batch.put(TREE, b"k", value(b"in tree"));
    batch.put(TREE, b"\xff", value(b"ff in tree"));
    batch.put(TREE_LONGER, b"k", value(b"in longer"));
    batch.put(TREE_LONGER, b"", value(b"empty key in longer"));
    batch.put(TREE_LONGER, b"\x00", value(b"zero in longer"));
    batch.put(TREE_OTHER, b"k", value(b"in other"));
    store.commit(batch).await?;

    assert_eq!(
        get(&store, TREE, b"k").await?.as_deref(),
        Some(&b"in tree"[..])
    );
    assert_eq!(
        get(&store, TREE_LONGER, b"k").await?.as_deref(),
        Some(&b"in longer"[..])
    );
    assert_eq!(
        get(&store, TREE_OTHER, b"k").await?.as_deref(),
        Some(&b"in other"[..])
    );
    assert_eq!(
        get(&store, TREE, b"").await?,
        None,
        "another tree's empty key showed"
    );

    let all = pairs(&[(b"k", b"in tree"), (b"\xff", b"ff in tree")]);
    assert_eq!(
        plain(store.scan(TREE, b"", usize::MAX).await?),
        all,
        "a whole-tree scan shows another tree's entries"
    );
    assert_eq!(shown_keys(store.keys(TREE, b"").await?), keys_of(&all));
    assert_eq!(
        plain(
            store
                .scan_range_rev(TREE, b"", b"\xff\xff", usize::MAX)
                .await?
        ),
        all.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        shown_keys(store.keys(TREE_LONGER, b"").await?),
        key_list(&[b"", b"\x00", b"k"])
    );
    assert_eq!(
        plain(store.scan(TREE_OTHER, b"", usize::MAX).await?),
        pairs(&[(b"k", b"in other")])
    );
    assert!(
        store.keys("never-written", b"").await?.is_empty(),
        "a tree never written is not empty"
    );
    Ok(())
}

/// The keys of the scan checks, in key order.
const SCAN_KEYS: &[&[u8]] = &[
    b"a", b"g1-\x00", b"g1-1", b"g1-2", b"g1-3", b"g10", b"g2-1", b"h",
];

/// Scans return exactly the keys with the prefix, in key order, at most `limit` (none for a
/// limit of zero), whatever the limit.
///
/// # Errors
///
/// The first store error met.
pub async fn scans_return_a_prefix_in_key_order_up_to_the_limit<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    // Written out of order, and over two commits.
    put_all(
        &store,
        TREE,
        &[(b"g1-3", b"v3"), (b"h", b"vh"), (b"g1-1", b"v1")],
    )
    .await?;
    put_all(
        &store,
        TREE,
        &[
            (b"g10", b"v10"),
            (b"a", b"va"),
            (b"g2-1", b"w1"),
            (b"g1-2", b"v2"),
            (b"g1-\x00", b"v0"),
        ],
    )
    .await?;

    let g1 = pairs(&[
        (b"g1-\x00", b"v0"),
        (b"g1-1", b"v1"),
        (b"g1-2", b"v2"),
        (b"g1-3", b"v3"),
    ]);
    assert_eq!(plain(store.scan(TREE, b"g1-", usize::MAX).await?), g1);
    for limit in 0..=5 {
        assert_eq!(
            plain(store.scan(TREE, b"g1-", limit).await?),
            g1[..limit.min(g1.len())].to_vec(),
            "a scan with limit {limit}"
        );
    }
    assert_eq!(
        keys_of(&plain(store.scan(TREE, b"g1", usize::MAX).await?)),
        key_list(&[b"g1-\x00", b"g1-1", b"g1-2", b"g1-3", b"g10"]),
        "a prefix that is part of another key's prefix"
    );
    assert_eq!(
        plain(store.scan(TREE, b"g1-2", usize::MAX).await?),
        pairs(&[(b"g1-2", b"v2")]),
        "a prefix that is a whole key"
    );
    assert!(store.scan(TREE, b"g3", usize::MAX).await?.is_empty());
    assert!(store.scan(TREE, b"g1-4", usize::MAX).await?.is_empty());
    assert!(
        store.scan(TREE, b"i", usize::MAX).await?.is_empty(),
        "a prefix after every key"
    );
    assert!(
        store.scan(TREE, b"\x00", usize::MAX).await?.is_empty(),
        "a prefix before every key"
    );
    let everything = store.scan(TREE, b"", usize::MAX).await?;
    assert_eq!(
        keys_of(&plain(everything)),
        key_list(SCAN_KEYS),
        "a whole-tree scan"
    );
    assert_eq!(store.scan(TREE, b"", 3).await?.len(), 3);
    assert!(
        store.scan(TREE, b"", 0).await?.is_empty(),
        "a limit of zero returned entries"
    );
    Ok(())
}

/// Keys of `0xFF` bytes, and prefixes of them, scan, list and range exactly like others.
///
/// # Errors
///
/// The first store error met.
pub async fn prefixes_of_ff_bytes_scan_exactly_their_keys<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    let all: &[(&[u8], &[u8])] = &[
        (b"\x00", b"zero"),
        (b"\xfe", b"fe"),
        (b"\xfe\xff", b"fe ff"),
        (b"\xfe\xff\xff", b"fe ff ff"),
        (b"\xff", b"ff"),
        (b"\xff\x00", b"ff 00"),
        (b"\xff\xfe", b"ff fe"),
        (b"\xff\xff", b"ff ff"),
        (b"\xff\xff\x01", b"ff ff 01"),
        (b"\xff\xff\xff\xff", b"ff ff ff ff"),
    ];
    put_all(&store, TREE, all).await?;
    // Right after TREE's keys in a backend that puts every tree in one key space.
    put_all(
        &store,
        TREE_LONGER,
        &[(b"", b"longer"), (b"\x00", b"longer 00")],
    )
    .await?;
    let expect = |pick: &[usize]| -> Vec<Pair> {
        pick.iter()
            .map(|i| (shown(all[*i].0), shown(all[*i].1)))
            .collect()
    };

    let cases: &[(&[u8], &[usize])] = &[
        (b"\xff", &[4, 5, 6, 7, 8, 9]),
        (b"\xff\xff", &[7, 8, 9]),
        (b"\xff\xff\xff", &[9]),
        (b"\xff\xff\xff\xff", &[9]),
        (b"\xff\xff\xff\xff\xff", &[]),
        (b"\xfe", &[1, 2, 3]),
        (b"\xfe\xff", &[2, 3]),
        (b"\xff\x00", &[5]),
        (b"", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ];
    for (prefix, pick) in cases {
        let expected = expect(pick);
        assert_eq!(
            plain(store.scan(TREE, prefix, usize::MAX).await?),
            expected,
            "a scan of prefix {prefix:02x?}"
        );
        assert_eq!(
            shown_keys(store.keys(TREE, prefix).await?),
            keys_of(&expected),
            "the keys of prefix {prefix:02x?}"
        );
        assert_eq!(
            plain(store.scan(TREE, prefix, 1).await?),
            expected[..expected.len().min(1)].to_vec(),
            "the first of prefix {prefix:02x?}"
        );
    }
    // Ranges ending past every key, or at 0xFF keys.
    assert_eq!(
        plain(
            store
                .scan_range_rev(TREE, b"\xff", b"\xff\xff\xff\xff\xff", 3)
                .await?
        ),
        expect(&[9, 8, 7])
    );
    assert_eq!(
        plain(
            store
                .scan_range_rev(TREE, b"\xfe\xff", b"\xff\x00", usize::MAX)
                .await?
        ),
        expect(&[4, 3, 2])
    );
    assert_eq!(
        plain(
            store
                .scan_range_rev(TREE, b"\xff\xff", b"\xff\xff\xff\xff", usize::MAX)
                .await?
        ),
        expect(&[8, 7]),
        "the range's end is not exclusive"
    );
    Ok(())
}

/// Reverse range scans return the keys in `[start, end)`, highest first, at most `limit`, and
/// nothing for an empty or inverted range.
///
/// # Errors
///
/// The first store error met.
pub async fn reverse_range_scans_return_the_highest_keys_first_within_the_range<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    let seq = |n: u64| n.to_be_bytes().to_vec();
    let mut batch = Batch::new();
    for n in [1u64, 2, 3, 5, 8, 13, 256, 257] {
        batch.put(TREE, &seq(n), value(format!("m{n}").as_bytes()));
    }
    batch.put(TREE_LONGER, &seq(4), value(b"other tree"));
    store.commit(batch).await?;
    let found = |entries: Vec<Entry>| -> Vec<String> {
        entries
            .into_iter()
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            .collect()
    };

    assert_eq!(
        found(
            store
                .scan_range_rev(TREE, &seq(2), &seq(8), usize::MAX)
                .await?
        ),
        ["m5", "m3", "m2"],
        "the start is included and the end excluded"
    );
    assert_eq!(
        found(store.scan_range_rev(TREE, &seq(2), &seq(9), 2).await?),
        ["m8", "m5"]
    );
    assert_eq!(
        found(store.scan_range_rev(TREE, &seq(0), &seq(4), 1).await?),
        ["m3"]
    );
    assert_eq!(
        found(
            store
                .scan_range_rev(TREE, &seq(6), &seq(7), usize::MAX)
                .await?
        ),
        Vec::<String>::new(),
        "a range with no key"
    );
    assert_eq!(
        found(
            store
                .scan_range_rev(TREE, &seq(200), &seq(u64::MAX), usize::MAX)
                .await?
        ),
        ["m257", "m256"]
    );
    assert_eq!(
        found(store.scan_range_rev(TREE, b"", &seq(2), usize::MAX).await?),
        ["m1"],
        "a range from the empty key"
    );
    assert_eq!(
        found(store.scan_range_rev(TREE, b"", b"\xff", 100).await?),
        ["m257", "m256", "m13", "m8", "m5", "m3", "m2", "m1"],
        "the whole tree, newest first"
    );
    assert!(
        store
            .scan_range_rev(TREE, &seq(2), &seq(8), 0)
            .await?
            .is_empty(),
        "limit 0"
    );
    assert!(
        store
            .scan_range_rev(TREE, &seq(5), &seq(5), usize::MAX)
            .await?
            .is_empty(),
        "an empty range [k, k)"
    );
    assert!(
        store
            .scan_range_rev(TREE, &seq(8), &seq(2), usize::MAX)
            .await?
            .is_empty(),
        "an inverted range"
    );
    assert!(
        store
            .scan_range_rev(TREE, b"\xff", b"", usize::MAX)
            .await?
            .is_empty()
    );
    Ok(())
}

/// `keys` lists the keys with a prefix, in order, values untouched.
///
/// # Errors
///
/// The first store error met.
pub async fn keys_list_a_prefix_in_order<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    let puts: Vec<(&[u8], &[u8])> = SCAN_KEYS.iter().rev().map(|k| (*k, &b"v"[..])).collect();
    put_all(&store, TREE, &puts).await?;
    assert_eq!(
        shown_keys(store.keys(TREE, b"").await?),
        key_list(SCAN_KEYS)
    );
    assert_eq!(
        shown_keys(store.keys(TREE, b"g1-").await?),
        key_list(&[b"g1-\x00", b"g1-1", b"g1-2", b"g1-3"])
    );
    assert_eq!(shown_keys(store.keys(TREE, b"h").await?), key_list(&[b"h"]));
    assert!(store.keys(TREE, b"z").await?.is_empty());
    Ok(())
}

/// A removed key is gone from `get`, scans, ranges and `keys`; removing a key that is not
/// there is no error; a key removed and written again is back.
///
/// # Errors
///
/// The first store error met.
pub async fn removals_hide_values_from_every_read<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    put_all(
        &store,
        TREE,
        &[
            (b"a1", b"1"),
            (b"a2", b"2"),
            (b"a3", b"3"),
            (b"\xff", b"ff"),
        ],
    )
    .await?;
    let mut batch = Batch::new();
    batch.remove(TREE, b"a2");
    batch.remove(TREE, b"\xff");
    batch.remove(TREE, b"never there");
    batch.remove(TREE_OTHER, b"a1");
    store.commit(batch).await?;

    assert_eq!(
        get(&store, TREE, b"a2").await?,
        None,
        "a removed value still reads"
    );
    assert_eq!(get(&store, TREE, b"\xff").await?, None);
    assert_eq!(get(&store, TREE, b"a1").await?.as_deref(), Some(&b"1"[..]));
    assert_eq!(
        plain(store.scan(TREE, b"", usize::MAX).await?),
        pairs(&[(b"a1", b"1"), (b"a3", b"3")])
    );
    assert_eq!(
        shown_keys(store.keys(TREE, b"a").await?),
        key_list(&[b"a1", b"a3"])
    );
    assert_eq!(
        plain(store.scan_range_rev(TREE, b"a", b"b", usize::MAX).await?),
        pairs(&[(b"a3", b"3"), (b"a1", b"1")])
    );
    assert!(store.keys(TREE, b"\xff").await?.is_empty());

    // Removed and written in one batch: the batch's last write counts.
    let mut batch = Batch::new();
    batch.remove(TREE, b"a1");
    batch.put(TREE, b"a2", value(b"back"));
    store.commit(batch).await?;
    assert_eq!(
        plain(store.scan(TREE, b"a", usize::MAX).await?),
        pairs(&[(b"a2", b"back"), (b"a3", b"3")])
    );
    Ok(())
}

/// One commit that adds, replaces and removes across trees is visible all at once.
///
/// # Errors
///
/// The first store error met.
pub async fn a_commit_over_several_trees_is_seen_whole<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    store.commit(history()).await?;
    store.commit(step()).await?;
    assert_after_step(&store, "after the commit").await
}

/// A store reopened after commits holds exactly what they wrote, and takes new commits.
///
/// # Errors
///
/// The first store error met.
pub async fn a_reopened_store_holds_exactly_what_was_committed<F: StoreFactory>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    store.commit(history()).await?;
    store.commit(step()).await?;
    let store = factory.reopen(store).await?;
    assert_after_step(&store, "after reopening").await?;
    put_all(
        &store,
        TREE_LATER,
        &[(b"later", b"written after reopening")],
    )
    .await?;
    let store = factory.reopen(store).await?;
    assert_after_step(&store, "after reopening twice").await?;
    assert_eq!(
        get(&store, TREE_LATER, b"later").await?.as_deref(),
        Some(&b"written after reopening"[..])
    );
    Ok(())
}

/// A commit that fails part way leaves the store exactly as before it, also after reopening,
/// and the same batch commits afterwards.
///
/// # Errors
///
/// The first store error met, but for the failure the check causes.
pub async fn a_commit_that_fails_part_way_leaves_none_of_its_writes<F: TornCommit>(
    factory: &mut F,
) -> Result<(), StoreError> {
    let store = factory.create().await?;
    store.commit(history()).await?;
    let writes = step().len();
    for after in [0, 1, writes - 1] {
        let failed = factory.commit_torn(&store, step(), after).await;
        assert!(
            matches!(failed, Err(StoreError::Db(_))),
            "a commit given up after {after} writes did not fail: {failed:?}"
        );
        assert_history(
            &store,
            &format!("after a commit failed after {after} writes"),
        )
        .await?;
    }
    let store = factory.reopen(store).await?;
    assert_history(&store, "after failed commits and reopening").await?;
    store.commit(step()).await?;
    assert_after_step(&store, "after the failed batch was committed again").await
}

/// What the store holds before [`step`].
fn history() -> Batch {
    let mut batch = Batch::new();
    batch.put(TREE, b"cursor", value(b"1"));
    batch.put(TREE, b"old", value(b"to be removed"));
    batch.put(TREE_OTHER, b"m1", value(b"first message"));
    batch
}

/// A step over three trees: replaces, removes and adds.
fn step() -> Batch {
    let mut batch = Batch::new();
    batch.put(TREE, b"cursor", value(b"2"));
    batch.remove(TREE, b"old");
    batch.put(TREE_OTHER, b"m2", value(b"second message"));
    batch.put(TREE_LONGER, b"seen", value(b"m2"));
    batch
}

/// Checks that the store holds [`history`] and nothing of [`step`].
async fn assert_history<S: ClientStore>(store: &S, when: &str) -> Result<(), StoreError> {
    assert_eq!(
        plain(store.scan(TREE, b"", usize::MAX).await?),
        pairs(&[(b"cursor", b"1"), (b"old", b"to be removed")]),
        "{when}"
    );
    assert_eq!(
        plain(store.scan(TREE_OTHER, b"", usize::MAX).await?),
        pairs(&[(b"m1", b"first message")]),
        "{when}"
    );
    assert!(store.keys(TREE_LONGER, b"").await?.is_empty(), "{when}");
    Ok(())
}

/// Checks that the store holds [`history`] with [`step`] applied, all of it.
async fn assert_after_step<S: ClientStore>(store: &S, when: &str) -> Result<(), StoreError> {
    assert_eq!(
        plain(store.scan(TREE, b"", usize::MAX).await?),
        pairs(&[(b"cursor", b"2")]),
        "{when}"
    );
    assert_eq!(
        plain(store.scan(TREE_OTHER, b"", usize::MAX).await?),
        pairs(&[(b"m1", b"first message"), (b"m2", b"second message")]),
        "{when}"
    );
    assert_eq!(
        plain(store.scan(TREE_LONGER, b"", usize::MAX).await?),
        pairs(&[(b"seen", b"m2")]),
        "{when}"
    );
    Ok(())
}
