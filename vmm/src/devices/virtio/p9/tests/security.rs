//! Confinement: a hostile client must not reach or change anything outside the root.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use super::*;

/// Checks that walking `names` stops after `n` of them and creates no `newfid`.
fn assert_walk_stops(c: &mut Client, fid: u32, newfid: u32, names: &[&str], n: usize) {
    assert_eq!(c.walk(fid, newfid, names).unwrap().len(), n, "{names:?}");
    assert_eq!(c.getattr(newfid).err(), Some(libc::EBADF), "{names:?}");
}

#[test]
fn test_dotdot_at_root_stays_at_root() {
    let mut c = Client::new();
    let root = c.getattr(0).unwrap().qid;
    let q = c.walk(0, 1, &["..", "..", ".."]).unwrap();
    assert!(q.iter().all(|q| *q == root));
    assert_eq!(c.getattr(1).unwrap().qid, root);
    assert_walk_stops(&mut c, 0, 2, &["..", "secret"], 1);
    c.assert_outside_untouched();
}

#[test]
fn test_dotdot_below_root_goes_to_parent() {
    let mut c = Client::new();
    std::fs::create_dir_all(c.path("a/b")).unwrap();
    let q = c.walk(0, 1, &["a", "b", "..", "..", ".."]).unwrap();
    let root = c.getattr(0).unwrap().qid;
    assert_eq!(q[2].path, lstat(&c.path("a")).ino());
    assert_eq!(q[3], root);
    assert_eq!(q[4], root);
}

#[test]
fn test_dotdot_after_moving_a_directory_up_still_stops_at_root() {
    let mut c = Client::new();
    std::fs::create_dir_all(c.path("a/b/c")).unwrap();
    c.walk(0, 1, &["a", "b", "c"]).unwrap();
    // The fid was 3 levels deep; now its directory sits directly under the root. The fid
    // names the path it was walked to, which is gone.
    std::fs::rename(c.path("a/b/c"), c.path("c")).unwrap();
    assert_eq!(c.walk(1, 2, &["..", "..", "..", ".."]), Err(libc::ENOENT));
    let q = c.walk(0, 2, &["c", "..", ".."]).unwrap();
    let root = c.getattr(0).unwrap().qid;
    assert_eq!(q[1..], [root, root]);
    assert_eq!(c.walk(2, 3, &["secret"]), Err(libc::ENOENT));
}

#[test]
fn test_names_with_slash_nul_dot_or_too_long_are_refused() {
    let mut c = Client::new();
    for bad in ["../secret", "a/b", "/etc", ".", "", "a\0b"] {
        assert_eq!(c.walk(0, 1, &[bad]), Err(libc::EINVAL), "walk {bad:?}");
        c.walk(0, 9, &[]).unwrap();
        assert_eq!(
            c.lcreate(9, bad, O_RDWR, 0o644, 0),
            Err(libc::EINVAL),
            "create {bad:?}"
        );
        c.clunk(9).unwrap();
        assert_eq!(
            c.mkdir(0, bad, 0o755, 0),
            Err(libc::EINVAL),
            "mkdir {bad:?}"
        );
        assert_eq!(
            c.symlink(0, bad, "x", 0),
            Err(libc::EINVAL),
            "symlink {bad:?}"
        );
    }
    for bad in ["..", "../secret"] {
        assert_eq!(c.unlinkat(0, bad, 0), Err(libc::EINVAL), "unlinkat {bad:?}");
        assert_eq!(
            c.mkdir(0, bad, 0o755, 0),
            Err(libc::EINVAL),
            "mkdir {bad:?}"
        );
    }
    let long = "x".repeat(256);
    assert_eq!(c.walk(0, 1, &[&long]), Err(libc::ENAMETOOLONG));
    let rn = Enc::default().u32(0).s(b"..").u32(0).s(b"x");
    assert_eq!(c.rpc(t::RENAMEAT, rn).err(), Some(libc::EINVAL));
    c.assert_outside_untouched();
}

#[test]
fn test_symlink_to_host_etc_is_never_followed() {
    let mut c = Client::new();
    c.symlink(0, "etc", "/etc", 0).unwrap();
    c.symlink(0, "pw", "/etc/passwd", 0).unwrap();
    // Walking through the link does not enter the host's /etc.
    assert_walk_stops(&mut c, 0, 1, &["etc", "passwd"], 1);
    assert_eq!(c.walk(0, 1, &["etc"]).unwrap()[0].ty, wire::QT_SYMLINK);
    assert_eq!(c.walk(1, 4, &["passwd"]), Err(libc::ENOTDIR));
    // The link itself is held as a link; opening it fails instead of opening /etc/passwd.
    let q = c.walk(0, 2, &["pw"]).unwrap();
    assert_eq!(q[0].ty, wire::QT_SYMLINK);
    assert_eq!(c.lopen(2, O_RDONLY), Err(libc::ELOOP));
    assert_eq!(c.read(2, 0, 100), Err(libc::EBADF));
    let a = c.getattr(2).unwrap();
    assert_eq!(
        a.mode & libc::S_IFMT,
        libc::S_IFLNK,
        "getattr describes the link"
    );
    c.walk(0, 3, &["etc"]).unwrap();
    assert_eq!(c.lopen(3, O_RDONLY), Err(libc::ELOOP));
    assert_eq!(c.readdir(3, 0, 4096).err(), Some(libc::EBADF));
}

#[test]
fn test_host_symlink_escaping_root_cannot_be_written_through() {
    let mut c = Client::new();
    std::os::unix::fs::symlink(c.outer.join("secret"), c.path("out")).unwrap();
    std::os::unix::fs::symlink("../secret", c.path("rel")).unwrap();
    std::os::unix::fs::symlink(&c.outer, c.path("up")).unwrap();
    for name in ["out", "rel"] {
        // Open, create-or-open with truncation, truncate, chmod and times through it.
        assert_eq!(c.open_at_root(1, name, O_RDWR | O_TRUNC), Err(libc::ELOOP));
        c.clunk(1).unwrap();
        c.walk(0, 1, &[]).unwrap();
        assert_eq!(
            c.lcreate(1, name, O_RDWR | O_TRUNC, 0o666, 0),
            Err(libc::ELOOP)
        );
        c.clunk(1).unwrap();
        c.walk(0, 1, &[name]).unwrap();
        let trunc = Enc::default()
            .u32(1)
            .u32(0x8 | 0x1)
            .u32(0o777)
            .u32(0)
            .u32(0)
            .u64(0);
        let trunc = trunc.u64(0).u64(0).u64(0).u64(0);
        assert!(c.rpc(t::SETATTR, trunc).is_err());
        c.clunk(1).unwrap();
    }
    assert_walk_stops(&mut c, 0, 1, &["up", "secret"], 1);
    let secret = lstat(&c.outer.join("secret"));
    assert_eq!(secret.mode() & 0o777, 0o644);
    c.assert_outside_untouched();
}

#[test]
fn test_setattr_on_symlink_changes_the_link_not_its_target() {
    let mut c = Client::new();
    std::os::unix::fs::symlink("../secret", c.path("l")).unwrap();
    c.walk(0, 1, &["l"]).unwrap();
    let chown = Enc::default()
        .u32(1)
        .u32(0x2 | 0x4)
        .u32(0)
        .u32(555)
        .u32(556)
        .u64(0);
    c.rpc(t::SETATTR, chown.u64(0).u64(0).u64(0).u64(0))
        .unwrap();
    assert_eq!(lstat(&c.path("l")).uid(), 555);
    assert_eq!(lstat(&c.outer.join("secret")).uid(), 0);
    let times = Enc::default()
        .u32(1)
        .u32(0x10 | 0x20 | 0x80 | 0x100)
        .u32(0)
        .u32(0)
        .u32(0);
    c.rpc(t::SETATTR, times.u64(0).u64(7).u64(0).u64(7).u64(0))
        .unwrap();
    assert_eq!(lstat(&c.path("l")).mtime(), 7);
    assert_ne!(lstat(&c.outer.join("secret")).mtime(), 7);
}

/// How long the FIFO test waits before calling the opens blocked: a watchdog for a hang,
/// not a speed bound (nothing here should take more than milliseconds).
const BLOCKED: Duration = Duration::from_secs(60);

#[test]
fn test_lopen_fifo_is_refused_without_blocking() {
    let mut c = Client::new();
    nix::unistd::mkfifo(
        &c.path("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    // No reader or writer ever opens the FIFO: an open of it by the server would block.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut errs = Vec::new();
        for flags in [O_RDONLY, O_WRONLY, O_RDWR] {
            errs.push(c.open_at_root(1, "fifo", flags));
            c.clunk(1).unwrap();
        }
        c.walk(0, 1, &[]).unwrap();
        errs.push(c.lcreate(1, "fifo", O_WRONLY, 0o644, 0));
        tx.send(errs).unwrap();
    });
    let errs = rx
        .recv_timeout(BLOCKED)
        .expect("the server blocked opening a FIFO");
    assert_eq!(errs, [Err(libc::ENXIO); 4]);
}

#[test]
fn test_lopen_device_and_socket_nodes_is_refused() {
    let mut c = Client::new();
    let kinds = [
        (
            "null",
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::makedev(1, 3),
        ),
        (
            "loop",
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::makedev(7, 0),
        ),
        ("sock", nix::sys::stat::SFlag::S_IFSOCK, 0),
    ];
    for (name, kind, dev) in kinds {
        let perm = nix::sys::stat::Mode::from_bits_truncate(0o666);
        nix::sys::stat::mknod(&c.path(name), kind, perm, dev).unwrap();
        for flags in [O_RDONLY, O_RDWR] {
            assert_eq!(c.open_at_root(1, name, flags), Err(libc::ENXIO), "{name}");
            c.clunk(1).unwrap();
        }
        // Attributes can still be read, as for any file.
        c.walk(0, 1, &[name]).unwrap();
        let a = c.getattr(1).unwrap();
        assert_eq!(a.mode & libc::S_IFMT, kind.bits());
        c.clunk(1).unwrap();
    }
}

#[test]
fn test_read_only_refuses_every_change_with_erofs() {
    let mut c = Client::with(true, 0);
    std::fs::write(c.path("f"), b"data").unwrap();
    std::fs::create_dir(c.path("d")).unwrap();
    c.walk(0, 1, &["f"]).unwrap();
    for flags in [O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC] {
        assert_eq!(c.lopen(1, flags), Err(libc::EROFS), "lopen {flags:o}");
    }
    c.walk(0, 2, &[]).unwrap();
    assert_eq!(c.lcreate(2, "new", O_RDWR, 0o644, 0), Err(libc::EROFS));
    let ro = |c: &mut Client, ty: u8, e: Enc| {
        assert_eq!(c.rpc(ty, e).err(), Some(libc::EROFS), "type {ty}")
    };
    ro(
        &mut c,
        t::WRITE,
        Enc::default().u32(1).u64(0).u32(1).u8(b'x'),
    );
    let sa = Enc::default().u32(1).u32(0x1).u32(0o777).u32(0).u32(0);
    ro(&mut c, t::SETATTR, sa.u64(0).u64(0).u64(0).u64(0).u64(0));
    ro(
        &mut c,
        t::MKDIR,
        Enc::default().u32(0).s(b"n").u32(0o755).u32(0),
    );
    ro(
        &mut c,
        t::SYMLINK,
        Enc::default().u32(0).s(b"n").s(b"t").u32(0),
    );
    ro(
        &mut c,
        t::MKNOD,
        Enc::default()
            .u32(0)
            .s(b"n")
            .u32(libc::S_IFIFO | 0o644)
            .u32(0)
            .u32(0)
            .u32(0),
    );
    ro(&mut c, t::LINK, Enc::default().u32(0).u32(1).s(b"n"));
    ro(&mut c, t::RENAME, Enc::default().u32(1).u32(0).s(b"n"));
    ro(
        &mut c,
        t::RENAMEAT,
        Enc::default().u32(0).s(b"f").u32(0).s(b"n"),
    );
    ro(&mut c, t::UNLINKAT, Enc::default().u32(0).s(b"f").u32(0));
    ro(
        &mut c,
        t::XATTRCREATE,
        Enc::default().u32(1).s(b"user.x").u64(1).u32(0),
    );
    c.walk(0, 3, &["d"]).unwrap();
    ro(&mut c, t::REMOVE, Enc::default().u32(3));
    // Reads still work.
    c.lopen(1, O_RDONLY).unwrap();
    assert_eq!(c.read(1, 0, 10).unwrap(), b"data");
    assert_eq!(std::fs::read(c.path("f")).unwrap(), b"data");
    assert!(c.path("d").exists() && !c.path("n").exists() && !c.path("new").exists());
}

#[test]
fn test_fid_table_is_bounded() {
    let mut c = Client::new();
    for fid in 1..super::super::fid::MAX_FIDS as u32 {
        c.walk(0, fid, &[]).unwrap();
    }
    assert_eq!(c.walk(0, u32::MAX - 1, &[]), Err(libc::EMFILE));
    assert_eq!(c.attach(u32::MAX - 1, 0), Err(libc::EMFILE));
    c.clunk(5).unwrap();
    c.walk(0, u32::MAX - 1, &[]).unwrap();
}
