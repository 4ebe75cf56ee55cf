//! `state.json`: one detached run's record. Written by `isol run -d` (state `created`)
//! and then only by the run's supervisor (`running`, `exited`); always replaced whole
//! (a temp file in the same directory, then rename(2)), so a reader sees the old or the
//! new record, never half of one.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file's name in the run's directory.
pub const STATE_FILE: &str = "state.json";

/// Where a run is in its life, as its supervisor last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The supervisor is preparing the workload.
    Created,
    /// The workload's process tree exists.
    Running,
    /// The workload ended; `exit_code` says how.
    Exited,
}

/// One run's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// Random hex id.
    pub id: String,
    /// Unique name, if given.
    pub name: Option<String>,
    /// `container` or `vm`.
    pub mode: String,
    /// The workload's argv.
    pub command: Vec<String>,
    /// The recorded state.
    pub state: Status,
    /// The supervisor's pid, and its start time (clock ticks after boot, field 22 of
    /// /proc/PID/stat), so that a recycled pid is not taken for it.
    pub supervisor_pid: i32,
    /// See `supervisor_pid`.
    pub supervisor_start: u64,
    /// The workload's process (container: its init; VM: the VMM), once running.
    pub pid: Option<i32>,
    /// The cgroups it runs in (host paths), once running.
    #[serde(default)]
    pub cgroups: Vec<std::path::PathBuf>,
    /// Unix time (seconds) of creation.
    pub created: u64,
    /// Unix time the workload started.
    pub started: Option<u64>,
    /// Unix time it ended.
    pub finished: Option<u64>,
    /// isol's exit code for it (run's convention: code, 128+N, 124, 125, 126, 127).
    pub exit_code: Option<i32>,
    /// Why it ended, when the code alone does not say (isol's own error, timeout).
    pub message: Option<String>,
}

/// Creates (or truncates) `path`, mode 0600.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Unix time now, in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RunState {
    /// Reads `dir/state.json`.
    pub fn read(dir: &Path) -> std::io::Result<RunState> {
        let text = std::fs::read(dir.join(STATE_FILE))?;
        serde_json::from_slice(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Replaces `dir/state.json` atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let written = private_file(&tmp).and_then(|mut f| f.write_all(&json));
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, dir.join(STATE_FILE))) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// The name, or the id's first 12 characters.
    pub fn short_name(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or(&self.id[..self.id.len().min(12)])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record for tests.
    pub(crate) fn sample(id: &str, name: Option<&str>) -> RunState {
        RunState {
            id: id.into(),
            name: name.map(Into::into),
            mode: "container".into(),
            command: vec!["sh".into(), "-c".into(), "true".into()],
            state: Status::Created,
            supervisor_pid: 1,
            supervisor_start: 2,
            pid: None,
            cgroups: vec![],
            created: 3,
            started: None,
            finished: None,
            exit_code: None,
            message: None,
        }
    }

    #[test]
    fn test_write_then_read_roundtrip_and_no_temp_left() {
        let d = tempfile::tempdir().unwrap();
        let mut s = sample("ab", Some("web"));
        s.write(d.path()).unwrap();
        assert_eq!(RunState::read(d.path()).unwrap(), s);
        s.state = Status::Exited;
        s.exit_code = Some(143);
        s.write(d.path()).unwrap();
        assert_eq!(RunState::read(d.path()).unwrap(), s);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]);
    }

    #[test]
    fn test_state_names_are_lowercase_words() {
        let j = serde_json::to_value(sample("ab", None)).unwrap();
        assert_eq!(j["state"], "created");
        assert_eq!(j["name"], serde_json::Value::Null);
        assert!(serde_json::from_str::<Status>("\"running\"").is_ok());
        assert!(serde_json::from_str::<Status>("\"bogus\"").is_err());
    }

    #[test]
    fn test_read_garbage_is_invalid_data() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(STATE_FILE), b"{not json").unwrap();
        let e = RunState::read(d.path()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
