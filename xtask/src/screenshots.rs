//! `cargo xtask screenshots`: copies the screenshots the web tests wrote (target/screenshots/,
//! one per screen, width and colour scheme, made by `checkScreen` in web/tests/a11y.ts) into
//! docs/screenshots/, where the README shows them and they are reviewed like code. Only the
//! main screens ([`MAIN_SCREENS`]), light scheme, at the two widths the README shows (390 and
//! 1280 px) are kept; the tests check every screen, dark ones too, with axe all the same.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The widths the README shows: a phone (390 × 844) and a laptop (1280 × 800).
const WIDTHS: [&str; 2] = ["390", "1280"];

/// The screens the README shows, as `checkScreen` names them in the web tests.
const MAIN_SCREENS: [&str; 35] = [
    "welcome",
    "create-profile",
    "unlock",
    "join",
    "waiting",
    "agreement",
    "groups",
    "conversation",
    "muted",
    "crisis-resources",
    "report",
    "group-info",
    "safety-number",
    "settings",
    "about",
    "facilitator-needs-you",
    "facilitator-members",
    "facilitator-invites",
    "facilitator-settings",
    "facilitator-log",
    "link-code",
    "link-compare-new",
    "devices",
    "link-compare-existing",
    "unlink-confirm",
    "unlinked",
    "meetings",
    "round-start",
    "round",
    "content-warning",
    "resources",
    "safety-plan",
    "facilitator-meetings",
    "facilitator-warnings",
    "facilitator-resources",
];

/// Copies `target/screenshots/<screen>-<width>.png` for both widths into `docs/screenshots/`,
/// replacing what was there, and lists what it copied.
pub fn run(root: &Path) -> Result<()> {
    let from = root.join("target").join("screenshots");
    let to = root.join("docs").join("screenshots");
    if !from.is_dir() {
        bail!(
            "{} does not exist: run `cargo xtask test-web` first (the web tests write the \
             screenshots)",
            from.display()
        );
    }
    std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
    let mut names: Vec<String> = std::fs::read_dir(&from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_kept(name))
        .collect();
    names.sort();
    let missing: Vec<String> = MAIN_SCREENS
        .iter()
        .flat_map(|screen| {
            WIDTHS
                .iter()
                .map(move |width| format!("{screen}-{width}.png"))
        })
        .filter(|name| !names.contains(name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the web tests wrote no {} in {}: run `cargo xtask test-web` (every main screen is \
             shown in the README)",
            missing.join(", "),
            from.display()
        );
    }
    for name in &names {
        std::fs::copy(from.join(name), to.join(name))
            .with_context(|| format!("copying {name} into {}", to.display()))?;
        println!("docs/screenshots/{name}");
    }
    println!("xtask: {} screenshots copied", names.len());
    Ok(())
}

/// Whether a file the tests wrote is one the README shows: `<screen>-<width>.png` for one of
/// [`MAIN_SCREENS`] and [`WIDTHS`] (the dark-scheme copies end in `-dark.png` and stay in
/// target/).
fn is_kept(name: &str) -> bool {
    name.strip_suffix(".png")
        .and_then(|stem| stem.rsplit_once('-'))
        .is_some_and(|(screen, width)| MAIN_SCREENS.contains(&screen) && WIDTHS.contains(&width))
}

#[cfg(test)]
mod tests {
    use super::is_kept;

    #[test]
    fn only_the_light_pictures_at_the_readmes_widths_are_kept() {
        assert!(is_kept("welcome-390.png"));
        assert!(is_kept("facilitator-needs-you-1280.png"));
        assert!(!is_kept("open-elsewhere-390.png"));
        assert!(!is_kept("welcome-390-dark.png"));
        assert!(!is_kept("welcome-800.png"));
        assert!(!is_kept("-390.png"));
        assert!(!is_kept("welcome-390.jpg"));
    }
}
