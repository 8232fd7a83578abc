//! A single instance's `state_file`: a snapshot of its runtime consumers and quota
//! counts (snapshot.rs) and a journal of the changes since (journal.rs), read
//! and replayed at start-up with the config (so `-t` checks both). A write appends
//! one line to the journal and syncs it before the admin API answers, so it costs
//! itself, not the state; the journal is compacted into a new snapshot once it
//! outgrows the old one (compaction.rs). Quota counts are journaled like any
//! change: a line of the counts, which costs the counts and never the keys, on the
//! same synced append as the admin writes.

mod atomic;
mod compaction;
mod journal;
mod rebuild;
mod snapshot;

use crate::consumers::stored::{Change, StateDoc};
use journal::{Appender, Failure};
use rebuild::Rebuilt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the state file held at start-up.
pub struct StateFile {
    pub path: PathBuf,
    pub doc: StateDoc,
    /// Where the writer goes on from.
    pub journal: JournalAt,
}

/// The journal as start-up found it.
pub struct JournalAt {
    /// Its whole lines' length: a torn last line after them is cut off.
    complete_len: u64,
    /// The last entry, or the snapshot's.
    seq: u64,
    snapshot_bytes: u64,
}

impl StateFile {
    /// Read with the config (`config::load`), so `-t` checks it too; `Err` says what
    /// this config cannot take from it. None yet is an empty state. Nothing is
    /// written here: a torn last line of the journal is only cut off by the writer.
    pub fn read(path: &Path, tier_names: &[String]) -> Result<StateFile, Vec<String>> {
        let (doc, snapshot_bytes) = snapshot::read(path).map_err(|e| vec![e])?;
        let journal = journal::read(&journal::path_of(path), None).map_err(|e| vec![e])?;
        let mut rebuilt = Rebuilt::from_snapshot(doc);
        for entry in journal.entries {
            rebuilt.replay(entry.seq, entry.change);
        }
        let seq = rebuilt.seq();
        let doc = rebuilt.into_doc();
        let problems = doc.problems(tier_names);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(StateFile {
            path: path.to_path_buf(),
            doc,
            journal: JournalAt {
                complete_len: journal.complete_len,
                seq,
                snapshot_bytes,
            },
        })
    }
}

pub struct StateFileWriter {
    path: PathBuf,
    journal_path: PathBuf,
    /// Writes are serialised under it; a compaction's thread takes it to finish.
    appending: Arc<Mutex<Appending>>,
}

struct Appending {
    appender: Appender,
    /// The last entry appended, or the snapshot's.
    seq: u64,
    snapshot_bytes: u64,
    /// The journal's length that starts the next compaction.
    compact_at: u64,
    compacting: bool,
    /// Why writes are refused until a restart: an append could not be undone.
    stuck: Option<String>,
}

impl StateFileWriter {
    /// Goes on from where start-up found the journal, cutting off a torn last line
    /// and removing the temporary files of replacements a crash interrupted.
    pub fn open(path: PathBuf, at: JournalAt) -> Result<StateFileWriter, String> {
        let journal_path = journal::path_of(&path);
        atomic::remove_stale_temporaries(&path);
        atomic::remove_stale_temporaries(&journal_path);
        let appender = Appender::open(&journal_path, at.complete_len)
            .map_err(|e| format!("{}: {e}", journal_path.display()))?;
        let appending = Appending {
            appender,
            seq: at.seq,
            snapshot_bytes: at.snapshot_bytes,
            compact_at: compaction::bound(at.snapshot_bytes),
            compacting: false,
            stuck: None,
        };
        Ok(StateFileWriter {
            path,
            journal_path,
            appending: Arc::new(Mutex::new(appending)),
        })
    }

    fn lock(appending: &Mutex<Appending>) -> MutexGuard<'_, Appending> {
        appending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `change` to the journal, on disk when this returns `Ok`; on error
    /// the journal is as it was.
    pub fn save(&self, change: &Change) -> Result<(), String> {
        let shown = self.journal_path.display();
        let mut held = Self::lock(&self.appending);
        if let Some(why) = &held.stuck {
            return Err(format!("state file {shown}: {why}"));
        }
        let seq = held.seq + 1;
        match held.appender.append(seq, change) {
            Ok(()) => held.seq = seq,
            Err(Failure::Undone(e)) => return Err(format!("state file {shown}: {e}")),
            Err(Failure::Stuck(e)) => {
                let why = format!("a write failed ({e}) and could not be undone; restart to write again");
                log::error!("state file {shown}: {why}");
                held.stuck = Some(why.clone());
                return Err(format!("state file {shown}: {why}"));
            }
        }
        if !held.compacting && held.appender.len() >= held.compact_at {
            self.compact(&mut held);
        }
        Ok(())
    }

    /// Starts a compaction of the journal as it stands, on a thread of its own.
    fn compact(&self, held: &mut Appending) {
        held.compacting = true;
        let up_to = held.appender.len();
        let (path, journal_path) = (self.path.clone(), self.journal_path.clone());
        let appending = self.appending.clone();
        std::thread::spawn(move || {
            let made = compaction::make_snapshot(&path, up_to);
            let mut held = Self::lock(&appending);
            held.compacting = false;
            let restarted = made.map(|bytes| {
                held.snapshot_bytes = bytes;
                held.appender.restart_after(&journal_path, up_to)
            });
            let snapshot_bytes = held.snapshot_bytes;
            let failed = match restarted {
                Ok(Ok(())) => {
                    held.compact_at = compaction::bound(snapshot_bytes);
                    log::info!(
                        "state file {}: compacted ({snapshot_bytes} bytes, journal restarted)",
                        path.display()
                    );
                    None
                }
                Ok(Err(Failure::Stuck(e))) => {
                    let why = format!("the journal's restart failed ({e}); restart to write again");
                    log::error!("state file {}: {why}", journal_path.display());
                    held.stuck = Some(why);
                    None
                }
                Ok(Err(Failure::Undone(e))) => Some(e.to_string()),
                Err(e) => Some(e),
            };
            if let Some(e) = failed {
                // Tried again once the journal grew by as much again.
                held.compact_at = held.appender.len() + compaction::bound(snapshot_bytes);
                log::warn!("state file {}: not compacted: {e}", path.display());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::stored::StoredKey;

    fn tiers() -> Vec<String> {
        vec!["free".into(), "gold".into()]
    }

    fn read(path: &Path) -> Result<StateFile, Vec<String>> {
        StateFile::read(path, &tiers())
    }

    fn open(path: &Path) -> StateFileWriter {
        let at = read(path).expect("readable").journal;
        StateFileWriter::open(path.to_path_buf(), at).expect("open")
    }

    fn key(id: &str) -> StoredKey {
        StoredKey {
            key_id: id.into(),
            consumer: "alice".into(),
            digest: "ab".repeat(32),
            tier: None,
            created_at_s: 1,
            expires_at_s: None,
        }
    }

    fn key_ids(path: &Path) -> Vec<String> {
        let doc = read(path).expect("readable").doc;
        doc.keys.into_iter().map(|k| k.key_id).collect()
    }

    fn line(seq: u64, change: &Change) -> String {
        format!(
            "{}\n",
            serde_json::to_string(&journal::Entry { seq, change }).expect("json")
        )
    }

    #[test]
    fn a_missing_file_is_an_empty_state_and_a_corrupt_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        assert_eq!(read(&path).expect("empty").doc, StateDoc::default());
        std::fs::write(&path, "{\"keys\": [}").expect("write");
        let said = read(&path).err().expect("corrupt");
        assert!(said[0].starts_with("not a floodgate state file"), "{said:?}");
        std::fs::write(
            &path,
            r#"{"keys":[{"key_id":"k","consumer":"c","digest":"ab","tier":"silver","created_at_s":1,"expires_at_s":null}],"tiers":{"c":"free"}}"#,
        )
        .expect("write");
        assert_eq!(
            read(&path).err().expect("unusable"),
            vec![
                "keys[0].digest is not a SHA-256 in hex",
                "keys[0].tier: no tier named \"silver\"",
            ]
        );
    }

    #[test]
    fn a_write_is_one_synced_line_of_the_journal_read_back_over_the_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let writer = open(&path);
        writer.save(&Change::AddKey(key("k1"))).expect("save");
        writer
            .save(&Change::SetTier {
                consumer: "alice".into(),
                tier: "gold".into(),
            })
            .expect("save");
        let journal = std::fs::read_to_string(journal::path_of(&path)).expect("journal");
        assert_eq!(journal.lines().count(), 2);
        assert!(!path.exists(), "no snapshot before the first compaction");
        let state = read(&path).expect("readable");
        assert_eq!(key_ids(&path), vec!["k1"]);
        assert_eq!(state.doc.tiers.get("alice").map(String::as_str), Some("gold"));
        assert_eq!(state.journal.seq, 2);
    }

    #[test]
    fn a_write_the_disk_refuses_is_refused_and_so_is_every_later_one_when_it_cannot_be_undone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink("/dev/full", journal::path_of(&path)).expect("symlink");
        // Not read first: /dev/full reads as endless zeros.
        let at = JournalAt {
            complete_len: 0,
            seq: 0,
            snapshot_bytes: 0,
        };
        let writer = StateFileWriter::open(path.clone(), at).expect("open");
        let first = writer.save(&Change::AddKey(key("k1"))).expect_err("disk full");
        assert!(first.contains("state.json.journal"), "{first}");
        let later = writer
            .save(&Change::RevokeKey { key_id: "k1".into() })
            .expect_err("stuck");
        assert!(later.contains("restart"), "{later}");
    }

    #[test]
    fn a_torn_last_line_is_ignored_then_cut_off_and_any_other_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let journal_path = journal::path_of(&path);
        let whole = line(1, &Change::AddKey(key("k1"))) + &line(2, &Change::AddKey(key("k2")));
        let torn = line(3, &Change::RevokeKey { key_id: "k1".into() });
        std::fs::write(&journal_path, format!("{whole}{}", &torn[..torn.len() - 5])).expect("write");
        assert_eq!(
            key_ids(&path),
            vec!["k1", "k2"],
            "the torn revocation was never answered"
        );
        assert!(
            std::fs::metadata(&journal_path).expect("journal").len() > whole.len() as u64,
            "reading (as -t does) changes nothing"
        );
        let writer = open(&path);
        assert_eq!(
            std::fs::read_to_string(&journal_path).expect("journal"),
            whole,
            "cut off"
        );
        writer.save(&Change::AddKey(key("k3"))).expect("save");
        assert_eq!(key_ids(&path), vec!["k1", "k2", "k3"]);
        assert_eq!(read(&path).expect("readable").journal.seq, 3);

        let bad = format!(
            "{}{{\"seq\":2}}\n{}",
            line(1, &Change::AddKey(key("k1"))),
            line(3, &Change::AddKey(key("k3")))
        );
        std::fs::write(&journal_path, bad).expect("write");
        let said = read(&path).err().expect("malformed");
        assert!(
            said[0].contains("state.json.journal line 2: not a floodgate journal entry"),
            "{said:?}"
        );
    }

    /// The files as a crash leaves them between a compaction's steps.
    #[test]
    fn a_crash_at_any_step_of_a_compaction_leaves_the_state_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let journal_path = journal::path_of(&path);
        let changes = [
            Change::AddKey(key("k1")),
            Change::AddKey(key("k2")),
            Change::RevokeKey { key_id: "k1".into() },
            Change::AddKey(key("k1-again")),
            Change::RevokeKey { key_id: "k2".into() },
        ];
        let journal: String = changes.iter().zip(1..).map(|(c, seq)| line(seq, c)).collect();
        std::fs::write(&journal_path, &journal).expect("journal");
        let expected = vec!["k1-again".to_string()];

        // While the snapshot is written: its temporary file is not read, and goes.
        let temporary = dir.path().join(format!("state.json.{}.tmp", std::process::id()));
        std::fs::write(&temporary, "{\"keys\": [").expect("temporary");
        assert_eq!(key_ids(&path), expected);

        // Between the snapshot's rename and the journal's restart: the snapshot holds
        // entries 1 to 3 and the journal still has them.
        let snapshot = StateDoc {
            keys: vec![key("k2")],
            seq: 3,
            ..StateDoc::default()
        };
        std::fs::write(&path, serde_json::to_vec(&snapshot).expect("json")).expect("snapshot");
        assert_eq!(key_ids(&path), expected);
        let writer = open(&path);
        assert!(!temporary.exists(), "removed at start");
        writer.save(&Change::AddKey(key("k3"))).expect("save");
        assert_eq!(key_ids(&path), ["k1-again", "k3"]);
        assert_eq!(read(&path).expect("readable").journal.seq, 6);

        // After the journal's restart: only what the snapshot lacks.
        let snapshot = StateDoc {
            keys: vec![key("k1-again")],
            seq: 5,
            ..StateDoc::default()
        };
        std::fs::write(&path, serde_json::to_vec(&snapshot).expect("json")).expect("snapshot");
        std::fs::write(&journal_path, line(6, &Change::AddKey(key("k3")))).expect("journal");
        assert_eq!(key_ids(&path), ["k1-again", "k3"]);
    }

    #[test]
    fn a_journal_that_outgrows_the_snapshot_is_compacted_while_writes_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let journal_path = journal::path_of(&path);
        let writer = open(&path);
        let mut written = Vec::new();
        // Past the bound, then on while the compaction runs.
        for i in 0.. {
            let id = format!("k{i:05}");
            writer.save(&Change::AddKey(key(&id))).expect("save");
            written.push(id);
            if i % 2 == 1 {
                let revoked = written.remove(written.len() / 2);
                writer.save(&Change::RevokeKey { key_id: revoked }).expect("save");
            }
            if path.exists() && i > 2_000 {
                break;
            }
        }
        let compacted = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !StateFileWriter::lock(&writer.appending).compacting
        });
        assert!(compacted, "the compaction finishes");
        let journal_len = std::fs::metadata(&journal_path).expect("journal").len();
        let snapshot_len = std::fs::metadata(&path).expect("snapshot").len();
        assert!(
            journal_len < compaction::bound(snapshot_len),
            "restarted: {journal_len} bytes"
        );
        let (snapshot, _) = snapshot::read(&path).expect("snapshot");
        assert!(snapshot.seq > 0);
        let mut held = key_ids(&path);
        held.sort();
        written.sort();
        assert_eq!(held, written);
    }

    #[test]
    fn temporary_files_of_unfinished_writes_are_removed_and_a_running_process_keeps_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str| dir.path().join(name);
        let own = format!("state.json.{}.tmp", std::process::id());
        let own_journal = format!("state.json.journal.{}.tmp", std::process::id());
        // Pid 1 is always running; no pid reaches 4,000,000,000.
        let names = [
            own.as_str(),
            own_journal.as_str(),
            "state.json.4000000000.tmp",
            "state.json.1.tmp",
            "state.json.tmp",
            "state.json.x.tmp",
            "other.json.4000000000.tmp",
        ];
        for name in names {
            std::fs::write(file(name), "{").expect("write");
        }
        let _writer = open(&file("state.json"));
        let left: Vec<bool> = names.iter().map(|n| file(n).exists()).collect();
        assert_eq!(left, [false, false, false, true, true, true, true]);
    }
}
