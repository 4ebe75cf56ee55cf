//! Escapes through a tree that moves: nested shares (one root inside another, the guest
//! renaming through the outer one) and host processes moving directories out of a share
//! or replacing them by symlinks. A fid must never lead outside its own root, whatever
//! happened to the tree since it was walked.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::*;

/// The names directly in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Tries every way up from `fid` of `c`: for each depth, walks `..` that many times then
/// `secret`, and walks `..` that many times then creates `planted` there. Returns whether
/// the secret was read.
fn try_climb(c: &mut Client, fid: u32) -> bool {
    let mut read = false;
    for depth in 1..=6 {
        let mut names = vec![".."; depth];
        names.push("secret");
        if let Ok(q) = c.walk(fid, 100, &names) {
            if q.len() == names.len() && c.lopen(100, O_RDONLY).is_ok() {
                read |= c.read(100, 0, 100).ok().as_deref() == Some(SECRET);
            }
        }
        names.pop();
        if c.walk(fid, 101, &names).is_ok() {
            let _ = c.lcreate(101, "planted", O_RDWR, 0o644, 0);
        }
        let _ = c.clunk(100);
        let _ = c.clunk(101);
    }
    read
}

/// `tmp/secret`, `tmp/root` served by `outer`, `tmp/root/inner` served by `inner`.
struct Nested {
    tmp: TempDir,
    outer: Client,
    inner: Client,
}

impl Nested {
    fn new() -> Nested {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("secret"), SECRET).unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("inner/d/e")).unwrap();
        let outer = Client::serving(&root, false, 0);
        let inner = Client::serving(&root.join("inner"), false, 0);
        Nested { tmp, outer, inner }
    }
}

#[test]
fn test_nested_shares_rename_out_through_outer_then_dotdot_stays_in_inner() {
    let mut n = Nested::new();
    // The guest holds a fid deep in the inner share...
    n.inner.walk(0, 1, &["d", "e"]).unwrap();
    // ...and moves its directory out of the inner share through the outer one.
    n.outer.walk(0, 1, &["inner"]).unwrap();
    let mv = Enc::default().u32(1).s(b"d").u32(0).s(b"d2");
    n.outer.rpc(t::RENAMEAT, mv).unwrap();
    assert!(n.tmp.path().join("root/d2/e").is_dir());
    assert!(
        !try_climb(&mut n.inner, 1),
        "read the host file outside both shares"
    );
    assert_eq!(names(n.tmp.path()), ["root", "secret"]);
    assert_eq!(names(&n.tmp.path().join("root")), ["d2", "inner"]);
    assert_eq!(fs::read(n.tmp.path().join("secret")).unwrap(), SECRET);
}

#[test]
fn test_nested_shares_dotdot_from_inner_root_never_reaches_outer_root() {
    let mut n = Nested::new();
    let outer_ino = lstat(&n.tmp.path().join("root")).ino();
    let q = n.inner.walk(0, 1, &["d", "..", "..", ".."]).unwrap();
    assert!(q.iter().all(|q| q.path != outer_ino), "{q:?}");
    assert_eq!(n.inner.walk(1, 2, &["inner"]), Err(libc::ENOENT));
}

#[test]
fn test_host_moves_directory_out_of_share_then_dotdot_stays_inside() {
    let mut c = Client::new();
    fs::create_dir_all(c.path("a/b")).unwrap();
    c.walk(0, 1, &["a", "b"]).unwrap();
    fs::rename(c.path("a"), c.outer.join("moved")).unwrap();
    assert!(
        !try_climb(&mut c, 1),
        "read the host file outside the share"
    );
    assert_eq!(names(&c.outer), ["moved", "root", "secret"]);
    assert_eq!(names(&c.outer.join("moved")), ["b"]);
    assert_eq!(names(&c.outer.join("moved/b")), Vec::<String>::new());
}

#[test]
fn test_open_directory_moved_out_of_share_cannot_be_listed() {
    let mut c = Client::new();
    fs::create_dir(c.path("a")).unwrap();
    c.open_at_root(1, "a", O_RDONLY).unwrap();
    fs::rename(c.path("a"), c.outer.join("moved")).unwrap();
    fs::write(c.outer.join("moved/outsider"), b"").unwrap();
    let listed = c.readdir(1, 0, 4096);
    let seen = listed.iter().flatten().any(|d| d.name == b"outsider");
    assert!(!seen, "listed a directory outside the share: {listed:?}");
}

#[test]
fn test_directory_replaced_by_symlink_to_outside_is_not_followed() {
    let mut c = Client::new();
    fs::create_dir(c.path("a")).unwrap();
    c.walk(0, 1, &["a"]).unwrap();
    fs::rename(c.path("a"), c.path("a.old")).unwrap();
    std::os::unix::fs::symlink(&c.outer, c.path("a")).unwrap();
    assert_eq!(c.walk(1, 2, &["secret"]).ok(), None);
    c.walk(1, 4, &[]).unwrap();
    let _ = c.lcreate(4, "x", O_RDWR, 0o644, 0);
    c.assert_outside_untouched();
}

#[test]
fn test_walked_fids_hold_no_fd_and_open_ones_hold_one() {
    let mut c = Client::new();
    fs::create_dir_all(c.path("a/b")).unwrap();
    fs::write(c.path("a/b/f"), b"x").unwrap();
    for fid in 1..50 {
        c.walk(0, fid, &["a", "b"]).unwrap();
    }
    assert_eq!(c.srv.held_fds().len(), 1, "only the root");
    c.walk(1, 60, &["f"]).unwrap();
    c.lopen(60, O_RDONLY).unwrap();
    assert_eq!(c.srv.held_fds().len(), 2);
    c.clunk(60).unwrap();
    assert_eq!(c.srv.held_fds().len(), 1);
}
