//! Look-alike display names: a client rule (PROTOCOL.md §11.9), not a log rule.
//!
//! A display name is any short Unicode text (§8.6), so "Аlice" with a Cyrillic `А` (U+0410) is
//! a valid name that looks exactly like the facilitator "Alice". The log cannot forbid it (names
//! in other scripts are legitimate), so every client warns instead, and evaluates the same rule:
//! two names are **confusable** when their Unicode TR39 skeletons are equal, either as written or
//! after lowercasing, once white space at both ends of each skeleton is trimmed and inner runs of
//! white space are one space (on the skeleton, which maps some characters that are not white
//! space, such as U+2800 BRAILLE PATTERN BLANK, to a space). The skeleton drops default-ignorable characters (zero-width joiner, zero-width
//! space, soft hyphen…) and maps each character to its prototype in the Unicode confusables table
//! (Cyrillic `а` → `a`, `1`/`I` → `l`, `m` → `rn`, …). Identical names are confusable too.
//!
//! The tables are those of the `unicode-security` crate ([`UNICODE_VERSION`]); a client on
//! another Unicode version may differ on rare characters, which changes only whether a warning is
//! shown, never any validity.

use unicode_security::{MixedScript as _, skeleton};

pub use unicode_security::UNICODE_VERSION;

/// The comparison form of one display name, computed once and compared with others'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameKey {
    /// TR39 skeleton of the name as written (catches `I` vs `l`, which lowercasing would split).
    exact: String,
    /// TR39 skeleton of the lowercased name (catches `ALICE` vs `Alice`, `А` vs `a`).
    folded: String,
}

impl NameKey {
    /// The comparison form of `name`.
    pub fn new(name: &str) -> Self {
        // White space is trimmed and collapsed on the skeleton, not before it: the skeleton maps
        // some characters that are not white space (U+2800 BRAILLE PATTERN BLANK, …) to a space.
        let spaced = |skeleton: String| skeleton.split_whitespace().collect::<Vec<_>>().join(" ");
        NameKey {
            exact: spaced(skeleton(name).collect()),
            folded: spaced(skeleton(&name.to_lowercase()).collect()),
        }
    }

    /// Whether the two names look alike (the rule of this module).
    pub fn is_confusable_with(&self, other: &NameKey) -> bool {
        self.exact == other.exact || self.folded == other.folded
    }
}

/// Whether two display names look alike.
pub fn are_confusable(a: &str, b: &str) -> bool {
    NameKey::new(a).is_confusable_with(&NameKey::new(b))
}

/// Which of `others` (the other members' display names) `name` looks like: sorted, each name
/// once. The caller leaves the member's own entry out of `others`.
pub fn confusable_with<'a>(name: &str, others: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let key = NameKey::new(name);
    let mut found: Vec<String> = others
        .into_iter()
        .filter(|other| key.is_confusable_with(&NameKey::new(other)))
        .map(str::to_owned)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Whether `name` mixes scripts in a way no single writing system does (TR39 mixed-script
/// detection: "Аlice" mixes Cyrillic and Latin; Japanese mixing Han and Kana is one script).
/// A further hint a client MAY show even when no other member's name is confusable.
pub fn is_mixed_script(name: &str) -> bool {
    !name.is_single_script()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyrillic_capital_a_looks_like_latin_a() {
        assert!(are_confusable("\u{0410}lice", "Alice"));
        assert!(are_confusable("\u{0430}lice", "alice"));
        assert!(is_mixed_script("\u{0410}lice"));
        assert!(!is_mixed_script("Alice"));
    }

    #[test]
    fn rn_looks_like_m_as_tr39_says() {
        assert!(are_confusable("rnia", "mia"));
        assert!(are_confusable("Sarn", "Sam"));
    }

    #[test]
    fn small_l_digit_one_and_capital_i_look_alike() {
        assert!(are_confusable("Ali", "A1i"));
        assert!(are_confusable("Ali", "AIi"));
        assert!(are_confusable("A1i", "AIi"));
    }

    #[test]
    fn invisible_characters_do_not_make_a_name_different() {
        assert!(are_confusable("Al\u{200D}ice", "Alice")); // zero-width joiner
        assert!(are_confusable("Ali\u{200B}ce", "Alice")); // zero-width space
        assert!(are_confusable("Al\u{00AD}ice", "Alice")); // soft hyphen
    }

    #[test]
    fn case_and_spacing_do_not_make_a_name_different() {
        assert!(are_confusable("ALICE", "Alice"));
        assert!(are_confusable(" Alice ", "Alice"));
        assert!(are_confusable("Mary  Ann", "Mary Ann"));
        assert!(are_confusable("Alice", "Alice"));
    }

    #[test]
    fn a_braille_blank_at_either_end_does_not_make_a_name_different() {
        // U+2800 is not white space, but its skeleton is a space: trimmed after the skeleton.
        assert!(are_confusable("Alice\u{2800}", "Alice"));
        assert!(are_confusable("\u{2800}Alice", "Alice"));
        assert!(are_confusable("Alice\u{2800}\u{2800}", "Alice"));
        assert!(are_confusable("Mary\u{2800}\u{2800}Ann", "Mary Ann"));
        assert!(are_confusable("\u{3000}Alice\u{3000}", "Alice")); // ideographic space
    }

    #[test]
    fn small_capitals_are_not_mapped_by_tr39() {
        // A documented gap (PROTOCOL.md §11.9): neither TR39, NFKC nor lowercasing maps U+1D00
        // LATIN LETTER SMALL CAPITAL A to `a`, so no client warns about it.
        assert!(!are_confusable("\u{1d00}lice", "Alice"));
    }

    #[test]
    fn genuinely_different_names_are_not_confusable() {
        assert!(!are_confusable("Alice", "Alicia"));
        assert!(!are_confusable("Bob", "Rob"));
        assert!(!are_confusable("Sam", "Pam"));
        assert!(!are_confusable("Mary Ann", "MaryAnn"));
    }

    #[test]
    fn confusable_with_names_each_look_alike_once_in_order() {
        let others = ["Alice", "Bob", "alice", "Alice", "A\u{200D}lice"];
        assert_eq!(
            confusable_with("\u{0410}lice", others),
            vec!["Alice".to_string(), "A\u{200D}lice".into(), "alice".into()]
        );
        assert!(confusable_with("Carol", others).is_empty());
    }
}
