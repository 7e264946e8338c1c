//! Data manifests: the lake files a model was trained on, one per line, and
//! the snapshot hash that identifies the set.

use std::path::Path;

use super::{RegistryError, sha256_hex};

/// The data snapshot hash of a manifest: the lines (lake file paths, one per
/// line, blank lines and `#` comments ignored) trimmed, sorted and
/// de-duplicated, then hashed. Order and spacing do not change the hash; any
/// file added or removed does.
pub fn data_snapshot(manifest: &str) -> String {
    let mut lines: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    sha256_hex(lines.join("\n").as_bytes())
}

/// Lake files as a data manifest, one path per line relative to the data dir.
pub fn manifest_of(files: impl IntoIterator<Item = String>) -> String {
    let mut lines: Vec<String> = files.into_iter().collect();
    lines.sort_unstable();
    lines.dedup();
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Reads a manifest file, checking that it lists at least one file.
pub fn read_manifest(path: &Path) -> Result<String, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
    {
        return Err(RegistryError::Manifest {
            path: path.to_path_buf(),
            message: "lists no data files (one lake file path per line)".into(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_hash_the_same_in_any_order() {
        assert_eq!(
            data_snapshot("b\na\n"),
            data_snapshot("# files\na\n\n b \na")
        );
        assert_ne!(data_snapshot("a\n"), data_snapshot("a\nc\n"));
    }
}
