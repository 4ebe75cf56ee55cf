//! The state directory: one subdirectory per detached run, named by its id.
//!
//! Location: `--root DIR`, else `/run/isol/runs` for root (a tmpfs on most hosts: a
//! reboot forgets every run, as runc's `/run/runc`), else `$XDG_RUNTIME_DIR/isol/runs`.
//! Directories are mode 0700: only their owner reads states, logs and sockets.
//!
//! Names are unique: creating a run and removing one take an exclusive `flock` on
//! `<root>/.lock`, and creation checks every recorded name under it, so two concurrent
//! `isol run -d --name web` cannot both succeed. A name stays taken until `isol rm`.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::state::RunState;

/// Why a run could not be created or found.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    /// The state directory could not be used.
    #[error("Cannot use the run state directory {path}")]
    Dir {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The name is taken.
    #[error("The name {name:?} is already used by run {id}; remove it (`isol rm {name}`) or pick another")]
    NameTaken {
        /// The name.
        name: String,
        /// The run holding it.
        id: String,
    },
    /// The name has characters outside the allowed set.
    #[error(
        "Invalid run name {0:?}: use 1-128 of [a-zA-Z0-9_.-], starting with a letter or digit"
    )]
    BadName(String),
    /// No run has this id, id prefix or name.
    #[error("No such run: {0:?} (see `isol ps -a`)")]
    NotFound(String),
    /// The prefix matches several runs.
    #[error("The id prefix {0:?} matches several runs; give more of the id")]
    Ambiguous(String),
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The default state directory for this user (see the module doc).
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/isol/runs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("isol/runs"),
        None => std::env::temp_dir().join(format!("isol-{}/runs", nix::unistd::geteuid())),
    }
}

/// Whether `name` is a valid run name (docker's rule).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// A new random id: 32 hex digits from the kernel's random pool.
pub fn new_id() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Store {
    /// The store at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A run's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn err(path: &Path) -> impl FnOnce(std::io::Error) -> RunsError + '_ {
        move |source| RunsError::Dir {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Takes the store's lock (released when dropped).
    pub fn lock(&self) -> Result<Flock<std::fs::File>, RunsError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(Self::err(&self.root))?;
        let path = self.root.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(Self::err(&path))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Self::err(&path)(std::io::Error::from(e)))
    }

    /// Creates the run of `state` (its `id` and `name` set): its directory and first
    /// state file, refusing a name in use.
    pub fn create(&self, state: &RunState) -> Result<PathBuf, RunsError> {
        if let Some(n) = &state.name {
            if !valid_name(n) {
                return Err(RunsError::BadName(n.clone()));
            }
        }
        let _lock = self.lock()?;
        if let Some(n) = &state.name {
            if let Some(other) = self.list().into_iter().find(|r| r.name.as_ref() == Some(n)) {
                return Err(RunsError::NameTaken {
                    name: n.clone(),
                    id: other.id,
                });
            }
        }
        let dir = self.dir(&state.id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(Self::err(&dir))?;
        if let Err(e) = state.write(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Self::err(&dir)(e));
        }
        Ok(dir)
    }

    /// Every run with a readable state file, oldest first.
    pub fn list(&self) -> Vec<RunState> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut runs: Vec<RunState> = entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| RunState::read(&e.path()).ok())
            .collect();
        runs.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        runs
    }

    /// The run called `key`: its full id, its name, or a unique prefix of its id.
    pub fn find(&self, key: &str) -> Result<RunState, RunsError> {
        let runs = self.list();
        if let Some(r) = runs
            .iter()
            .find(|r| r.id == key || r.name.as_deref() == Some(key))
        {
            return Ok(r.clone());
        }
        let mut by_prefix = runs
            .into_iter()
            .filter(|r| !key.is_empty() && r.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(r), None) => Ok(r),
            (Some(_), Some(_)) => Err(RunsError::Ambiguous(key.into())),
            _ => Err(RunsError::NotFound(key.into())),
        }
    }

    /// Removes a run's directory (under the lock, so a name is free only once its
    /// directory is gone).
    pub fn remove(&self, id: &str) -> Result<(), RunsError> {
        let _lock = self.lock()?;
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Self::err(&dir)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, name: Option<&str>) -> RunState {
        crate::state::tests::sample(id, name)
    }

    #[test]
    fn test_names_unique_and_free_after_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("runs"));
        s.create(&state("aa11", Some("web"))).unwrap();
        let e = s.create(&state("bb22", Some("web"))).unwrap_err();
        assert!(
            matches!(e, RunsError::NameTaken { ref id, .. } if id == "aa11"),
            "{e}"
        );
        assert!(!s.dir("bb22").exists());
        s.remove("aa11").unwrap();
        s.create(&state("bb22", Some("web"))).unwrap();
    }

    #[test]
    fn test_concurrent_creates_one_name_one_winner() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("runs"));
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..16)
                .map(|i| {
                    let s = s.clone();
                    sc.spawn(move || s.create(&state(&format!("id{i}"), Some("same"))).is_ok())
                })
                .collect();
            hs.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(s.list().len(), 1);
    }

    #[test]
    fn test_find_by_id_name_prefix_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        s.create(&state("abc123", Some("web"))).unwrap();
        s.create(&state("abd456", None)).unwrap();
        assert_eq!(s.find("web").unwrap().id, "abc123");
        assert_eq!(s.find("abc123").unwrap().id, "abc123");
        assert_eq!(s.find("abd").unwrap().id, "abd456");
        assert!(matches!(s.find("ab"), Err(RunsError::Ambiguous(_))));
        assert!(matches!(s.find("zz"), Err(RunsError::NotFound(_))));
        assert!(matches!(s.find(""), Err(RunsError::NotFound(_))));
    }

    #[test]
    fn test_valid_names() {
        for ok in ["web", "a", "web-1.b_c", "9x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "../x", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
        let d = tempfile::tempdir().unwrap();
        let e = Store::new(d.path())
            .create(&state("a", Some("../x")))
            .unwrap_err();
        assert!(matches!(e, RunsError::BadName(_)));
    }

    #[test]
    fn test_new_id_is_32_hex_and_random() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
