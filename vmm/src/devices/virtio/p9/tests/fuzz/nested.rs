//! Stateful fuzzing of request sequences on two servers with nested roots, the host moving
//! the tree between requests.
//!
//! Layout (`tmp/`): `outside/` and `secret` (never to be touched), `root/` served by the
//! outer server, `root/in/` served by the inner one, `moved/` where the host parks
//! directories it moves out of the shares. Between requests the host sometimes moves a
//! directory out of the shares, back in, between the two shares, or replaces one by a
//! symlink to `outside/`. Oracles, after every reply:
//! - framing: the size field is the length, the tag is echoed, the type is the request's
//!   plus one or Rlerror, the reply fits the capacity;
//! - every fd a server holds resolves (`/proc/self/fd` readlink) under its root's current
//!   path; an fd held from before a host move may instead be under `moved/`;
//! - the tree outside the shares never changes; after an Rlerror the tree inside is as
//!   it was before the request; no set-id file or device node ever appears inside.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::super::*;
use super::{mutate, plausible, Rng, TYPES};
use crate::devices::virtio::p9::ServerGroup;

/// Requests per seed.
const STEPS: usize = 1500;
/// Seeds the suite runs (a few seconds in all).
const SUITE_SEEDS: u64 = 4;
/// Open files the two servers may hold together (small, so `EMFILE` is exercised).
const BUDGET: usize = 24;

/// A file's observable state for the side-effect oracles.
type Snapshot = BTreeMap<PathBuf, (u32, u32, u32, u64, Option<PathBuf>)>;

/// Everything below `dir` (not following symlinks): mode, owner, size, link target.
fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            let size = if md.is_file() { md.len() } else { 0 };
            let target = md.is_symlink().then(|| fs::read_link(&p).unwrap());
            let key = p.strip_prefix(dir).unwrap().to_path_buf();
            out.insert(key, (md.mode(), md.uid(), md.gid(), size, target));
            if md.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

/// The path an fd of this process refers to, without a " (deleted)" suffix.
fn fd_path(fd: RawFd) -> PathBuf {
    let p = fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    let s = p.to_string_lossy();
    PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
}

/// One fuzzing world: the tree and two clients.
struct World {
    tmp: TempDir,
    base: PathBuf,
    servers: [Client; 2],
    outside: Snapshot,
    held: [Vec<RawFd>; 2],
    moves: usize,
    /// For each fd server `i` holds: `moves` when it was first seen.
    since: [BTreeMap<RawFd, usize>; 2],
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir_all(base.join("outside/sub")).unwrap();
        fs::write(base.join("outside/sub/x"), b"x").unwrap();
        fs::write(base.join("secret"), SECRET).unwrap();
        fs::create_dir(base.join("moved")).unwrap();
        let root = base.join("root");
        for d in ["d/e", "in/d/e", "in/a", "a/b"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["f", "d/f", "in/f", "in/d/e/f"] {
            fs::write(root.join(f), b"content").unwrap();
        }
        std::os::unix::fs::symlink("../secret", root.join("l")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("in/l")).unwrap();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&root.join("in/fifo"), mode).unwrap();
        let group = ServerGroup::new(BUDGET);
        let servers = [
            Client::in_group(&root, &group),
            Client::in_group(&root.join("in"), &group),
        ];
        let outside = World::outside_of(&base);
        World {
            tmp,
            base,
            servers,
            outside,
            held: [vec![], vec![]],
            moves: 0,
            since: [BTreeMap::new(), BTreeMap::new()],
        }
    }

    /// The state outside the shares: `outside/`, `secret` and the names in `tmp`.
    fn outside_of(base: &Path) -> Snapshot {
        let mut s = snapshot(&base.join("outside"));
        let md = fs::symlink_metadata(base.join("secret")).unwrap();
        let secret = (md.mode(), md.uid(), md.gid(), md.len(), None);
        s.insert(PathBuf::from("/secret"), secret);
        assert_eq!(fs::read(base.join("secret")).unwrap(), SECRET);
        let mut names: Vec<_> = fs::read_dir(base).unwrap().flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            s.insert(PathBuf::from("/").join(e.file_name()), (0, 0, 0, 0, None));
        }
        s
    }

    /// Directories under `root/` (not `root/` itself), sorted.
    fn dirs_inside(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = snapshot(&self.base.join("root"))
            .into_iter()
            .filter(|(_, (mode, ..))| mode & libc::S_IFMT == libc::S_IFDIR)
            .map(|(p, _)| self.base.join("root").join(p))
            .collect();
        v.sort();
        v
    }

    /// One host-side change of the tree.
    fn host_move(&mut self, rng: &mut Rng) {
        let dirs = self.dirs_inside();
        let parked: Vec<PathBuf> = fs::read_dir(self.base.join("moved"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        self.moves += 1;
        let n = self.moves;
        match rng.below(4) {
            // Out of the shares.
            0 if !dirs.is_empty() => {
                let from = rng.pick(&dirs).clone();
                let _ = fs::rename(from, self.base.join(format!("moved/{n}")));
            }
            // Back in, somewhere.
            1 if !parked.is_empty() && !dirs.is_empty() => {
                let to = rng.pick(&dirs).join(format!("back{n}"));
                let _ = fs::rename(rng.pick(&parked), to);
            }
            // Replaced by a symlink to the outside.
            2 if !dirs.is_empty() => {
                let from = rng.pick(&dirs).clone();
                if fs::rename(&from, self.base.join(format!("moved/{n}"))).is_ok() {
                    std::os::unix::fs::symlink(self.base.join("outside"), from).unwrap();
                }
            }
            // Between places inside (across the inner share's boundary too).
            _ if dirs.len() >= 2 => {
                let from = rng.pick(&dirs).clone();
                let to = rng.pick(&dirs).join(format!("m{n}"));
                let _ = fs::rename(from, to);
            }
            _ => {}
        }
    }

    /// Checks that every fd server `i` holds is under its root. An fd it has held since
    /// before a host move may be wherever the host moved it: under `moved/`, or under the
    /// other share (the host moves directories across the inner share's boundary too);
    /// never anywhere else.
    fn check_fds(&mut self, i: usize, what: &str) {
        let fds = self.servers[i].srv.held_fds();
        let root = fd_path(fds[0]);
        let moved = self.base.join("moved");
        let shares = self.base.join("root");
        let mut since = BTreeMap::new();
        for &fd in &fds[1..] {
            let first = match self.held[i].contains(&fd) {
                true => self.since[i].get(&fd).copied().unwrap_or(self.moves),
                false => self.moves,
            };
            since.insert(fd, first);
            let p = fd_path(fd);
            let old = self.moves > first;
            let ok =
                p.starts_with(&root) || (old && (p.starts_with(&moved) || p.starts_with(&shares)));
            assert!(
                ok,
                "{what}: server {i} holds fd {fd} = {p:?} outside {root:?} (held before: {old})"
            );
        }
        assert!(
            root.starts_with(self.base.join("root")) || root.starts_with(&moved),
            "{what}: root of server {i} is {root:?}"
        );
        self.held[i] = fds;
        self.since[i] = since;
    }

    /// Sends one request to server `i` and checks every oracle.
    fn step(&mut self, i: usize, req: &[u8], cap: usize, what: &str) {
        let inside = self.base.join("root");
        let before = snapshot(&inside);
        let reply = self.servers[i].raw(req, cap);
        check_framing(req, &reply, cap, what);
        if reply.len() >= HEADER_LEN && reply[4] == RLERROR {
            assert_eq!(before, snapshot(&inside), "{what}: side effect of an error");
        }
        for (p, (mode, ..)) in snapshot(&inside) {
            let ty = mode & libc::S_IFMT;
            assert_eq!(mode & 0o6000, 0, "{what}: set-id file {p:?}");
            assert!(
                ty != libc::S_IFCHR && ty != libc::S_IFBLK,
                "{what}: node {p:?}"
            );
        }
        self.check_fds(i, what);
        assert_eq!(self.outside, World::outside_of(&self.base), "{what}");
    }
}

/// The framing oracle.
fn check_framing(req: &[u8], reply: &[u8], cap: usize, what: &str) {
    assert!(
        reply.len() <= cap,
        "{what}: reply {} > cap {cap}",
        reply.len()
    );
    if cap < wire::LERROR_LEN {
        return;
    }
    assert!(reply.len() >= HEADER_LEN, "{what}: reply {reply:?}");
    let size = u32::from_le_bytes(reply[..4].try_into().unwrap()) as usize;
    assert_eq!(size, reply.len(), "{what}: size field");
    if req.len() >= HEADER_LEN && reply[5..7] != wire::NOTAG.to_le_bytes() {
        assert_eq!(reply[5..7], req[5..7], "{what}: tag");
    }
    if reply[4] != RLERROR {
        assert_eq!(reply[4], req[4].wrapping_add(1), "{what}: reply type");
        assert_eq!(reply[5..7], req[5..7], "{what}: tag");
    }
}

/// Runs one seed: [`STEPS`] requests and host moves. Returns the requests sent.
fn run_seed(seed: u64) -> usize {
    let mut w = World::new();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut sent = 0;
    for n in 0..STEPS {
        let what = format!("seed {seed} step {n}");
        match rng.below(40) {
            0 => w.host_move(&mut rng),
            _ => {
                let i = rng.below(2) as usize;
                let ty = match rng.below(6) {
                    0 | 1 => t::WALK,
                    2 => t::LOPEN,
                    _ => *rng.pick(TYPES),
                };
                let mut req = plausible(&mut rng, ty);
                if rng.below(8) == 0 {
                    req = mutate(&mut rng, req);
                }
                let cap = *rng.pick(&[20, 64, 4096, 4096, 1 << 20]);
                w.step(i, &req, cap, &what);
                // Keep fid 0 attached (a Tversion or Tclunk may have dropped it).
                let _ = w.servers[i].attach(0, 0);
                sent += 1;
            }
        }
    }
    drop(w.tmp);
    sent
}

#[test]
fn test_fuzz_nested_shares_with_host_moves_never_escape_or_leave_side_effects() {
    let budget = std::env::var("ISOL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    // `ISOL_FUZZ_SEED=S` starts at seed S (to replay a failure a long run reported).
    let first = std::env::var("ISOL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1);
    let start = Instant::now();
    let (mut seeds, mut sent) = (0, 0);
    loop {
        eprintln!("p9 nested fuzz: seed {}", first + seeds);
        sent += run_seed(first + seeds);
        seeds += 1;
        let done = match budget {
            Some(b) => start.elapsed() >= b,
            None => seeds >= SUITE_SEEDS,
        };
        if done {
            break;
        }
    }
    eprintln!("p9 nested fuzz: {seeds} seeds, {sent} requests, 0 failures");
}
