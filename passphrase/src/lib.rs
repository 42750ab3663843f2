//! The rule for a new passphrase, written once for every front end: at least
//! [`MIN_PASSPHRASE_CHARS`] characters and a zxcvbn strength of at least
//! [`MIN_PASSPHRASE_SCORE`], with zxcvbn's hint when it is weaker.
//!
//! The passphrase protects the store that holds a member's keys and history on their device;
//! someone who copies that store (a stolen laptop, a browser profile) can guess offline, each
//! guess costing one Argon2id derivation. The rule keeps the guesses needed above about a
//! million.
//!
//! The CLI calls [`check_new`] in `confide init`; the web app loads this crate as its own small
//! wasm module on the create-profile screen (feature `wasm`: `checkPassphrase`), so
//! zxcvbn's dictionaries are not part of the app's first load.

use std::fmt;

use zeroize::Zeroizing;

/// The fewest characters a new passphrase may have (not counting spaces at either end).
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// The lowest strength a new passphrase may have, on zxcvbn's scale from 0 (guessed within
/// about a thousand tries) to 4 (more than 10^10): 2 means more than about a million guesses,
/// the least that slows down someone who copied the store, given that every guess also costs an
/// Argon2id derivation.
pub const MIN_PASSPHRASE_SCORE: u8 = 2;

/// How many characters of a new passphrase the strength estimate looks at (its cost grows
/// quickly with the length; a passphrase whose first 100 characters are strong is strong).
pub const MAX_STRENGTH_CHARS: usize = 100;

/// How hard a passphrase is to guess.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strength {
    /// zxcvbn's score, 0 (very weak) to 4 (strong).
    pub score: u8,
    /// What makes it weak, and what would help (empty when nothing does).
    pub hint: String,
}

impl Strength {
    /// The score in one word, as people are shown it.
    pub fn word(&self) -> &'static str {
        match self.score {
            0 => "very weak",
            1 => "weak",
            2 => "fair",
            3 => "good",
            _ => "strong",
        }
    }
}

impl fmt::Display for Strength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} of 4)", self.word(), self.score)
    }
}

/// Why a new passphrase is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer than [`MIN_PASSPHRASE_CHARS`] characters.
    TooShort,
    /// Long enough, but a strength below [`MIN_PASSPHRASE_SCORE`].
    TooEasy(Strength),
}

impl Refusal {
    /// A stable code for front ends: `too_short` or `too_easy`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooShort => "too_short",
            Refusal::TooEasy(_) => "too_easy",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooShort => write!(
                f,
                "the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters (a few \
                 words are easier to remember and harder to guess)"
            ),
            Refusal::TooEasy(strength) => {
                write!(
                    f,
                    "this passphrase would be easy to guess (strength: {strength})."
                )?;
                if !strength.hint.is_empty() {
                    write!(f, " {}", strength.hint)?;
                }
                write!(
                    f,
                    " Try a few unrelated words, such as four words picked at random"
                )
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// Estimates how hard `passphrase` is to guess (zxcvbn, on its first [`MAX_STRENGTH_CHARS`]
/// characters), with `user_inputs` (such as the person's pseudonym) counted as known to an
/// attacker.
pub fn strength(passphrase: &str, user_inputs: &[&str]) -> Strength {
    // The copy made here is wiped when dropped. zxcvbn makes copies of its own (lowercased
    // forms, the matched tokens kept in its estimate) and frees them without wiping: those
    // cannot be reached from here to wipe.
    let head: Zeroizing<String> =
        Zeroizing::new(passphrase.chars().take(MAX_STRENGTH_CHARS).collect());
    let estimate = zxcvbn::zxcvbn(&head, user_inputs);
    let hint = estimate.feedback().map_or_else(String::new, |f| {
        let mut parts: Vec<String> = f.warning().map(|w| w.to_string()).into_iter().collect();
        parts.extend(f.suggestions().iter().map(|s| s.to_string()));
        parts.join(" ")
    });
    Strength {
        score: u8::from(estimate.score()),
        hint,
    }
}

/// Refuses a new passphrase that is too short or too easy to guess, saying why and what helps;
/// returns its strength otherwise.
///
/// # Errors
/// [`Refusal::TooShort`] or [`Refusal::TooEasy`].
pub fn check_new(passphrase: &str, user_inputs: &[&str]) -> Result<Strength, Refusal> {
    if passphrase.trim().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(Refusal::TooShort);
    }
    let strength = strength(passphrase, user_inputs);
    if strength.score < MIN_PASSPHRASE_SCORE {
        return Err(Refusal::TooEasy(strength));
    }
    Ok(strength)
}

/// The rule for the web app, as its own wasm module.
#[cfg(all(target_arch = "wasm32", feature = "wasm"))]
pub mod wasm {
    use wasm_bindgen::prelude::wasm_bindgen;
    use zeroize::Zeroizing;

    /// What the create-profile screen shows while a passphrase is typed.
    #[wasm_bindgen(getter_with_clone)]
    pub struct PassphraseCheck {
        /// zxcvbn's score, 0 (very weak) to 4 (strong); 0 when too short.
        pub score: u8,
        /// The score in one word ("very weak" … "strong").
        pub word: String,
        /// Whether the passphrase may be used.
        pub acceptable: bool,
        /// Why not, as a stable code (`too_short`, `too_easy`), or `undefined`.
        pub refusal: Option<String>,
        /// The sentence to show: why it is refused and what helps, or zxcvbn's hint.
        pub message: String,
    }

    /// Checks a new passphrase (UTF-8 bytes, wiped here after use; the caller wipes its own
    /// copy) against the rule, with `user_inputs` such as the pseudonym counted as known.
    #[wasm_bindgen(js_name = checkPassphrase)]
    pub fn check_passphrase(passphrase: Vec<u8>, user_inputs: Vec<String>) -> PassphraseCheck {
        let bytes = Zeroizing::new(passphrase);
        // Invalid UTF-8 cannot come from a TextEncoder; it is checked as empty, so refused.
        let text = std::str::from_utf8(&bytes).unwrap_or("");
        let inputs: Vec<&str> = user_inputs.iter().map(String::as_str).collect();
        match super::check_new(text, &inputs) {
            Ok(strength) => PassphraseCheck {
                score: strength.score,
                word: strength.word().to_string(),
                acceptable: true,
                refusal: None,
                message: strength.hint.clone(),
            },
            Err(refusal) => {
                let score = match &refusal {
                    super::Refusal::TooShort => 0,
                    super::Refusal::TooEasy(strength) => strength.score,
                };
                PassphraseCheck {
                    score,
                    word: super::Strength {
                        score,
                        hint: String::new(),
                    }
                    .word()
                    .to_string(),
                    acceptable: false,
                    refusal: Some(refusal.code().to_string()),
                    message: refusal.to_string(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn weak_passphrases_are_refused_with_a_hint_and_good_ones_show_their_strength() {
        for weak in [
            "password",
            "12345678",
            "aaaaaaaaaaaa",
            "qwertyuiop",
            "Alice123",
            "confide123",
        ] {
            let refused = check_new(weak, &["Alice", "confide"]).unwrap_err();
            assert!(
                matches!(refused, Refusal::TooEasy(_)),
                "{weak}: {refused:?}"
            );
            assert_eq!(refused.code(), "too_easy");
            let text = refused.to_string();
            assert!(text.contains("easy to guess"), "{text}");
            assert!(text.contains("four words"), "{text}");
        }
        let short = check_new("x7#Qp", &[]).unwrap_err();
        assert_eq!(short, Refusal::TooShort);
        assert!(short.to_string().contains("at least 8 characters"));
        // Spaces at either end do not count towards the length.
        assert_eq!(check_new("   abc   ", &[]).unwrap_err(), Refusal::TooShort);
        let good = check_new("maple trumpet gravel onion", &[]).unwrap();
        assert!(good.score >= MIN_PASSPHRASE_SCORE);
        assert!(good.to_string().ends_with(" of 4)"), "{good}");
        assert!(check_new("a long passphrase", &["Alice", "confide"]).is_ok());
    }

    #[test]
    fn a_very_long_passphrase_is_judged_on_its_head_without_delay() {
        let long = "maple trumpet gravel onion ".repeat(1_000);
        assert!(strength(&long, &[]).score >= MIN_PASSPHRASE_SCORE);
    }
}
