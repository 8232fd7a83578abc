//! Replacing a file whole, so a crash leaves the old content or the new, never
//! half of either: the new content goes to `<file>.<pid>.tmp` beside it, is
//! synced, renamed over the file, and the directory is synced. A crash before the
//! rename leaves the temporary file; it is removed at the next start and before
//! each replacement.

use std::path::{Path, PathBuf};

/// `<file>.<pid>.tmp`: per process, as an old and a new process overlap during
/// an upgrade.
fn temporary(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(tmp)
}

fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes renames and new names in `path`'s directory survive a crash.
pub fn sync_directory(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(directory(path))?.sync_all()
}

/// Replaces `path` with `write`'s bytes. `Err` before the rename leaves `path`
/// as it was; after it (the directory's sync), `path` holds the new content.
pub fn replace(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    remove_stale_temporaries(path);
    let tmp = temporary(path);
    let written = (|| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut file)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_directory(path)
}

/// Removes the temporary files of replacements that will never be renamed: those
/// of processes no longer running, and this process's own (called at start, or
/// with the writer's lock held, so none of its replacements is under way).
pub fn remove_stale_temporaries(path: &Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(directory(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let pid = file
            .to_str()
            .and_then(|f| f.strip_prefix(name)?.strip_prefix('.')?.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok());
        // Another running process may be between its write and its rename.
        let stale = pid.is_some_and(|pid| {
            pid == std::process::id() || !Path::new("/proc").join(pid.to_string()).exists()
        });
        if !stale {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => log::info!(
                "state file: removed {}, left by a write that never finished",
                entry.path().display()
            ),
            Err(e) => log::warn!("state file: cannot remove {}: {e}", entry.path().display()),
        }
    }
}
