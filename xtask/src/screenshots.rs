//! `cargo xtask screenshots`: copies the screenshots the web tests wrote (target/screenshots/,
//! one per screen, width and colour scheme, made by `checkScreen` in web/tests/a11y.ts) into
//! docs/screenshots/, where the README shows them and they are reviewed like code. Only the
//! light-scheme pictures at the two widths the README shows (390 and 1280 px) are kept; the
//! tests check the dark ones with axe all the same.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The widths the README shows: a phone (390 × 844) and a laptop (1280 × 800).
const WIDTHS: [&str; 2] = ["390", "1280"];

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
    if names.is_empty() {
        bail!("{} holds no screenshot to keep", from.display());
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
/// [`WIDTHS`] (the dark-scheme copies end in `-dark.png` and stay in target/).
fn is_kept(name: &str) -> bool {
    name.strip_suffix(".png")
        .and_then(|stem| stem.rsplit_once('-'))
        .is_some_and(|(screen, width)| !screen.is_empty() && WIDTHS.contains(&width))
}

#[cfg(test)]
mod tests {
    use super::is_kept;

    #[test]
    fn only_the_light_pictures_at_the_readmes_widths_are_kept() {
        assert!(is_kept("welcome-390.png"));
        assert!(is_kept("needs-you-1280.png"));
        assert!(!is_kept("welcome-390-dark.png"));
        assert!(!is_kept("welcome-800.png"));
        assert!(!is_kept("-390.png"));
        assert!(!is_kept("welcome-390.jpg"));
    }
}
