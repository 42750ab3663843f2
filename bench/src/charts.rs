//! Charts.
use std::path::{Path, PathBuf};
/// Renders.
pub fn render(_h: &Path, _o: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(vec![])
}
