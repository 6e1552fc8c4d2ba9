//! The config checkout as a jail: every file a resource reads from the config directory must
//! resolve inside it, after `..` and every symlink on the path are followed.

use std::path::{Path, PathBuf};

/// Why a path from config cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// It does not exist (or a directory on the way cannot be read).
    #[error("`{path}` cannot be read")]
    Unreadable {
        /// The path as written in config.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It resolves outside the config directory (an absolute path, `..`, or a symlink).
    #[error("`{path}` resolves to {}, outside the config directory {}", resolved.display(), root.display())]
    Outside {
        /// The path as written in config.
        path: String,
        /// Where it leads.
        resolved: PathBuf,
        /// The config directory.
        root: PathBuf,
    },
}

impl JailError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "paths are relative to the config directory",
            Self::Outside { .. } => {
                "files tend reads must be inside the config directory: copy the file into the repository instead of linking to it, and refer to it by a relative path"
            }
        }
    }
}

/// Resolve `rel` against `root`, following `..` and symlinks, and refuse a result outside
/// `root`. Returns the resolved path, which callers read (not `root.join(rel)`, whose symlinks
/// could be swapped afterwards to point elsewhere).
pub fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf, JailError> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let resolved = std::fs::canonicalize(root.join(rel)).map_err(|source| JailError::Unreadable { path: rel.to_string(), source })?;
    if resolved.starts_with(&root) { Ok(resolved) } else { Err(JailError::Outside { path: rel.to_string(), resolved, root }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_resolve_and_every_way_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cfg");
        std::fs::create_dir_all(root.join("files/sub")).unwrap();
        std::fs::write(root.join("files/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("secret.key"), "AGE-SECRET-KEY-1").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("files/inner")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.key"), root.join("files/outer")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        assert!(resolve_inside(&root, "files/a.txt").unwrap().ends_with("cfg/files/a.txt"));
        assert!(resolve_inside(&root, "files/inner").unwrap().ends_with("cfg/files/a.txt"));
        assert!(resolve_inside(&root, "files/sub/../a.txt").is_ok());
        for way_out in ["files/outer", "up/secret.key", "../secret.key", "files/../../secret.key", "/etc/hostname"] {
            match resolve_inside(&root, way_out) {
                Err(JailError::Outside { .. }) => {}
                other => panic!("{way_out}: {other:?}"),
            }
        }
        assert!(matches!(resolve_inside(&root, "missing"), Err(JailError::Unreadable { .. })));
    }
}

/// A path as the target will see it, without `./`, `..`, repeated or trailing `/` (lexically:
/// symlinks are the target's to resolve).
pub fn normalise_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("{}{}", if p.starts_with('/') { "/" } else { "" }, parts.join("/"))
}

#[cfg(test)]
mod normalise_tests {
    use super::normalise_path;

    #[test]
    fn paths_are_normalised_as_the_target_sees_them() {
        assert_eq!(normalise_path("/srv/./app/../app//conf/"), "/srv/app/conf");
        assert_eq!(normalise_path("/srv/app/conf"), "/srv/app/conf");
        assert_eq!(normalise_path("/../etc"), "/etc");
    }
}
