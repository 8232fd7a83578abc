//! A single instance's `state_file`: read and checked at start-up with the config
//! (so `-t` checks it too), then written atomically: the new content goes to a
//! temporary file beside it, is synced to disk, and is renamed over the old one
//! (then the directory is synced), so a crash leaves either the old state or the
//! new one, never half of either. A crash between the write and the rename leaves
//! the temporary file: it is removed at the next start and on every write.

use crate::consumers::stored::{Change, StateDoc};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the state file held at start-up.
pub struct StateFile {
    pub path: PathBuf,
    pub doc: StateDoc,
}

impl StateFile {
    /// Read with the config (`config::load`), so `-t` checks it too; `Err` says what
    /// this config cannot take from it. None yet is an empty state.
    pub fn read(path: &Path, tier_names: &[String]) -> Result<StateFile, Vec<String>> {
        let doc = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<StateDoc>(&bytes)
                .map_err(|e| vec![format!("not a floodgate state file: {e}")])?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateDoc::default(),
            Err(e) => return Err(vec![e.to_string()]),
        };
        let problems = doc.problems(tier_names);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(StateFile {
            path: path.to_path_buf(),
            doc,
        })
    }
}

pub struct StateFileWriter {
    path: PathBuf,
    /// What the file holds now; writes are serialised under it.
    doc: Mutex<StateDoc>,
}

impl StateFileWriter {
    pub fn new(path: PathBuf, doc: StateDoc) -> Self {
        let writer = StateFileWriter {
            path,
            doc: Mutex::new(doc),
        };
        writer.remove_stale_temporaries();
        writer
    }

    /// `<state file>.<pid>.tmp`: per process, as an old and a new process overlap
    /// during an upgrade.
    fn temporary(&self) -> PathBuf {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        PathBuf::from(tmp)
    }

    /// Removes the temporary files of writes that will never be renamed: those of
    /// processes no longer running, and this process's own (called at start, or with
    /// the state held, so none of its writes is under way).
    fn remove_stale_temporaries(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
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

    /// Writes the state with `change` applied; on error the file and the held
    /// state are as they were.
    pub fn save(&self, change: &Change) -> Result<(), String> {
        let mut held = self.doc.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = held.clone();
        next.apply(change);
        let shown = self.path.display();
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| e.to_string())?;
        self.remove_stale_temporaries();
        let tmp = self.temporary();
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| format!("state file {shown}: {e}"))?;
        // Renamed: the file holds the change, whatever the directory's sync says.
        *held = next;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("state file {shown}: written, but its directory did not sync: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(content: Option<&str>) -> Result<StateDoc, Vec<String>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        if let Some(content) = content {
            std::fs::write(&path, content).expect("write");
        }
        StateFile::read(&path, &["free".into()]).map(|file| file.doc)
    }

    #[test]
    fn a_missing_file_is_an_empty_state_and_a_corrupt_one_is_named() {
        assert_eq!(read(None), Ok(StateDoc::default()));
        let said = read(Some("{\"keys\": [}")).expect_err("corrupt");
        assert!(said[0].starts_with("not a floodgate state file"), "{said:?}");
        let said = read(Some(
            r#"{"keys":[{"key_id":"k","consumer":"c","digest":"ab","tier":"gold","created_at_s":1,"expires_at_s":null}],"tiers":{"c":"free"}}"#,
        ))
        .expect_err("unusable");
        assert_eq!(
            said,
            vec![
                "keys[0].digest is not a SHA-256 in hex",
                "keys[0].tier: no tier named \"gold\"",
            ]
        );
    }

    #[test]
    fn each_save_replaces_the_file_whole_and_a_failed_one_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let writer = StateFileWriter::new(path.clone(), StateDoc::default());
        let set = Change::SetTier {
            consumer: "alice".into(),
            tier: "gold".into(),
        };
        writer.save(&set).expect("save");
        let read: StateDoc = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        assert_eq!(read.tiers.get("alice").map(String::as_str), Some("gold"));
        assert!(
            std::fs::read_dir(dir.path()).expect("dir").count() == 1,
            "no temporary file left"
        );
        let gone = StateFileWriter::new(dir.path().join("missing/state.json"), StateDoc::default());
        let err = gone.save(&set).expect_err("no directory");
        assert!(err.contains("missing/state.json"), "{err}");
        assert_eq!(*gone.doc.lock().expect("doc"), StateDoc::default());
    }

    #[test]
    fn temporary_files_of_unfinished_writes_are_removed_and_a_running_process_keeps_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str| dir.path().join(name);
        let own = format!("state.json.{}.tmp", std::process::id());
        // Pid 1 is always running; no pid reaches 4,000,000,000.
        let names = [
            own.as_str(),
            "state.json.4000000000.tmp",
            "state.json.1.tmp",
            "state.json.tmp",
            "state.json.x.tmp",
            "other.json.4000000000.tmp",
        ];
        for name in names {
            std::fs::write(file(name), "{").expect("write");
        }
        let _writer = StateFileWriter::new(file("state.json"), StateDoc::default());
        let left: Vec<bool> = names.iter().map(|n| file(n).exists()).collect();
        assert_eq!(left, [false, false, true, true, true, true]);
    }
}
