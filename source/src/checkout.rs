//! Read-only checkouts of one commit each.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Write the tree of `commit` into `root/<commit>` unless it is there already; make it
/// read-only; keep the newest `keep` checkouts (by last use) and this one.
pub fn checkout(repo: &gix::Repository, root: &Path, commit: &str, keep: usize) -> Result<PathBuf, BoxError> {
    let dest = root.join(commit);
    if dest.is_dir() {
        touch(&dest);
        return Ok(dest);
    }
    fs_err::create_dir_all(root)?;
    let tmp = root.join(format!(".{commit}.tmp-{}", std::process::id()));
    if tmp.exists() {
        remove_tree(&tmp)?;
    }
    fs_err::create_dir_all(&tmp)?;
    let id = gix::ObjectId::from_hex(commit.as_bytes())?;
    let tree = repo.find_object(id)?.peel_to_commit()?.tree()?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut recorder)?;
    for entry in &recorder.records {
        let rel = entry.filepath.to_string();
        if rel.split('/').any(|part| part.is_empty() || part == "." || part == ".." || part == ".git") {
            continue; // never outside the checkout, never a nested repository
        }
        let path = tmp.join(&rel);
        if entry.mode.is_tree() {
            fs_err::create_dir_all(&path)?;
        } else if entry.mode.is_blob() || entry.mode.is_link() {
            if let Some(parent) = path.parent() {
                fs_err::create_dir_all(parent)?;
            }
            let data = repo.find_object(entry.oid)?.data.clone();
            if entry.mode.is_link() {
                std::os::unix::fs::symlink(String::from_utf8_lossy(&data).as_ref(), &path)?;
            } else {
                fs_err::write(&path, &data)?;
                let mode = if entry.mode.is_executable() { 0o555 } else { 0o444 };
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
        }
        // Submodules (commit entries) are not checked out.
    }
    set_dirs_mode(&tmp, 0o555)?;
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => {}
        // Another process checked the same commit out meanwhile: use theirs.
        Err(_) if dest.is_dir() => remove_tree(&tmp)?,
        Err(e) => return Err(e.into()),
    }
    prune(root, commit, keep);
    Ok(dest)
}

fn touch(dir: &Path) {
    if let Ok(f) = fs_err::File::open(dir) {
        let _ = f.file().set_modified(std::time::SystemTime::now());
    }
}

fn set_dirs_mode(dir: &Path, mode: u32) -> Result<(), BoxError> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            set_dirs_mode(&entry.path(), mode)?;
        }
    }
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Remove a read-only tree.
fn remove_tree(dir: &Path) -> Result<(), BoxError> {
    set_dirs_mode(dir, 0o755)?;
    fs_err::remove_dir_all(dir)?;
    Ok(())
}

fn prune(root: &Path, current: &str, keep: usize) {
    let Ok(entries) = fs_err::read_dir(root) else { return };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().len() == 40)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, dir) in dirs.into_iter().skip(keep.max(1)) {
        if !dir.ends_with(current) {
            let _ = remove_tree(&dir);
        }
    }
}
