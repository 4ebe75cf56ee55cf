//! Protocol behaviour on well-formed requests.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::*;

#[test]
fn test_version_negotiates_smaller_msize_and_rejects_others() {
    let mut c = Client::new();
    assert_eq!(
        c.version(1 << 30, b"9P2000.L").unwrap(),
        (MAX_MSIZE, b"9P2000.L".to_vec())
    );
    assert_eq!(c.version(8192, b"9P2000.L").unwrap().0, 8192);
    assert_eq!(c.version(8192, b"9P2000.u").unwrap().1, b"unknown");
    assert_eq!(c.version(100, b"9P2000.L"), Err(libc::EINVAL));
}

#[test]
fn test_version_drops_all_fids() {
    let mut c = Client::new();
    c.walk(0, 1, &[]).unwrap();
    c.version(MSIZE, b"9P2000.L").unwrap();
    assert_eq!(c.getattr(0).err(), Some(libc::EBADF));
    assert_eq!(c.getattr(1).err(), Some(libc::EBADF));
    assert_eq!(c.srv.fids.count(), 0);
}

#[test]
fn test_attach_and_getattr_root_is_the_served_directory() {
    let mut c = Client::new();
    let a = c.getattr(0).unwrap();
    let md = lstat(&c.root);
    assert_eq!(a.qid.ty, wire::QT_DIR);
    assert_eq!(a.qid.path, md.ino());
    assert_eq!(a.mode, md.mode());
    assert_eq!(c.attach(0, 0), Err(libc::EEXIST));
    let e = Enc::default().u32(5).u32(3).s(b"").s(b"").u32(0);
    assert_eq!(
        c.rpc(t::ATTACH, e).err(),
        Some(libc::EINVAL),
        "afid must be NOFID"
    );
}

#[test]
fn test_walk_partial_returns_qids_of_prefix_and_sets_no_newfid() {
    let mut c = Client::new();
    std::fs::create_dir_all(c.path("a/b")).unwrap();
    let q = c.walk(0, 1, &["a", "missing", "b"]).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].ty, wire::QT_DIR);
    assert_eq!(c.getattr(1).err(), Some(libc::EBADF));
    assert_eq!(c.walk(0, 1, &["missing"]), Err(libc::ENOENT));
    std::fs::write(c.path("file"), b"").unwrap();
    assert_eq!(c.walk(0, 1, &["file", "x"]).unwrap().len(), 1);
    c.walk(0, 2, &["file"]).unwrap();
    assert_eq!(c.walk(2, 3, &["x"]), Err(libc::ENOTDIR));
    assert_eq!(c.walk(2, 3, &[".."]), Err(libc::ENOTDIR));
    assert_eq!(c.walk(0, 1, &["a", "b"]).unwrap().len(), 2);
    assert_eq!(c.getattr(1).unwrap().qid.path, lstat(&c.path("a/b")).ino());
}

#[test]
fn test_walk_clone_onto_itself_and_in_use_newfid() {
    let mut c = Client::new();
    assert!(c.walk(0, 0, &[]).unwrap().is_empty());
    c.getattr(0).unwrap();
    c.walk(0, 1, &[]).unwrap();
    assert_eq!(c.walk(0, 1, &[]), Err(libc::EEXIST));
    assert_eq!(c.walk(9, 2, &[]), Err(libc::EBADF));
    let names = ["a"; 17];
    assert_eq!(c.walk(0, 2, &names), Err(libc::EINVAL));
}

#[test]
fn test_create_write_read_round_trip_with_owner_and_exact_mode() {
    let mut c = Client::with(false, 1234);
    c.walk(0, 1, &[]).unwrap();
    let q = c.lcreate(1, "f", O_RDWR, 0o664, 4321).unwrap();
    assert_eq!(q.ty, wire::QT_FILE);
    assert_eq!(c.write(1, 0, b"hello, 9p").unwrap(), 9);
    assert_eq!(c.write(1, 7, b"P!").unwrap(), 2);
    assert_eq!(c.read(1, 0, 100).unwrap(), b"hello, P!");
    assert_eq!(c.read(1, 3, 2).unwrap(), b"lo");
    assert_eq!(c.read(1, 100, 10).unwrap(), b"");
    let md = lstat(&c.path("f"));
    assert_eq!((md.uid(), md.gid()), (1234, 4321));
    assert_eq!(
        md.permissions().mode() & 0o7777,
        0o664,
        "host umask must not apply"
    );
    let a = c.getattr(1).unwrap();
    assert_eq!((a.size, a.uid, a.gid), (9, 1234, 4321));
    c.clunk(1).unwrap();
    assert_eq!(c.read(1, 0, 1), Err(libc::EBADF));
}

#[test]
fn test_lcreate_existing_opens_it_unless_excl() {
    let mut c = Client::new();
    std::fs::write(c.path("f"), b"old").unwrap();
    c.walk(0, 1, &[]).unwrap();
    assert_eq!(
        c.lcreate(1, "f", O_RDWR | O_EXCL, 0o644, 0),
        Err(libc::EEXIST)
    );
    c.lcreate(1, "f", O_RDWR | O_TRUNC, 0o644, 0).unwrap();
    assert_eq!(c.read(1, 0, 10).unwrap(), b"");
}

#[test]
fn test_lopen_modes() {
    let mut c = Client::new();
    std::fs::write(c.path("f"), b"data").unwrap();
    c.open_at_root(1, "f", O_RDONLY).unwrap();
    assert_eq!(c.write(1, 0, b"x"), Err(libc::EBADF), "opened read-only");
    assert_eq!(c.lopen(1, O_RDONLY), Err(libc::EBADF), "already open");
    c.walk(0, 2, &[]).unwrap();
    assert_eq!(c.lopen(2, O_WRONLY), Err(libc::EISDIR));
    assert_eq!(c.lopen(2, 3), Err(libc::EINVAL));
    c.walk(0, 3, &["f"]).unwrap();
    assert_eq!(
        c.lopen(3, 0o200000),
        Err(libc::ENOTDIR),
        "O_DIRECTORY on a file"
    );
    // Unknown and unwanted bits (O_DIRECT, O_NOATIME, high bits) are dropped.
    c.lopen(3, O_RDWR | 0o40000 | 0o1000000 | 0x4000_0000)
        .unwrap();
    assert_eq!(c.write(3, 4, b"!").unwrap(), 1);
    assert_eq!(std::fs::read(c.path("f")).unwrap(), b"data!");
}

/// Reads directory fid `fid` to the end, `count` bytes at a time.
fn read_all(c: &mut Client, fid: u32, count: u32) -> Vec<Dirent> {
    let (mut all, mut off) = (Vec::new(), 0);
    loop {
        let batch = c.readdir(fid, off, count).unwrap();
        let Some(last) = batch.last() else { return all };
        off = last.offset;
        all.extend(batch);
        assert!(all.len() < 10_000, "readdir does not terminate");
    }
}

#[test]
fn test_readdir_lists_everything_once_and_resumes_from_offsets() {
    let mut c = Client::new();
    let mut want: Vec<Vec<u8>> = vec![b".".to_vec(), b"..".to_vec()];
    for i in 0..200 {
        let name = format!("file-with-a-longish-name-{i:03}");
        std::fs::write(c.path(&name), b"").unwrap();
        want.push(name.into_bytes());
    }
    std::fs::create_dir(c.path("sub")).unwrap();
    want.push(b"sub".to_vec());
    want.sort();
    c.open_at_root(1, "..", O_RDONLY).unwrap();
    // A small count forces many round trips, each resuming from the last offset.
    let small = read_all(&mut c, 1, 300);
    let mut names: Vec<_> = small.iter().map(|d| d.name.clone()).collect();
    names.sort();
    assert_eq!(names, want);
    let sub = small.iter().find(|d| d.name == b"sub").unwrap();
    assert_eq!(sub.qid.ty, wire::QT_DIR);
    // Resuming from an entry's offset gives exactly the entries after it.
    let big = read_all(&mut c, 1, 60_000);
    assert_eq!(big.len(), small.len());
    let mid = &big[50];
    let rest = read_all_from(&mut c, 1, mid.offset);
    let expect: Vec<_> = big[51..].iter().map(|d| d.name.clone()).collect();
    assert_eq!(rest, expect);
    // Too small for even one entry.
    assert_eq!(c.readdir(1, 0, 10).err(), Some(libc::EINVAL));
}

fn read_all_from(c: &mut Client, fid: u32, mut off: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let batch = c.readdir(fid, off, 4096).unwrap();
        let Some(last) = batch.last() else { return out };
        off = last.offset;
        out.extend(batch.into_iter().map(|d| d.name));
    }
}

#[test]
fn test_readdir_needs_an_open_directory() {
    let mut c = Client::new();
    std::fs::write(c.path("f"), b"").unwrap();
    assert_eq!(c.readdir(0, 0, 1000).err(), Some(libc::EBADF));
    c.open_at_root(1, "f", O_RDONLY).unwrap();
    assert_eq!(c.readdir(1, 0, 1000).err(), Some(libc::ENOTDIR));
}

#[test]
fn test_mkdir_unlinkat_renameat() {
    let mut c = Client::with(false, 1000);
    let q = c.mkdir(0, "d", 0o1775, 100).unwrap();
    assert_eq!(q.ty, wire::QT_DIR);
    let md = lstat(&c.path("d"));
    assert!(md.is_dir());
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1000, 100, 0o1775)
    );
    assert_eq!(c.mkdir(0, "d", 0o755, 0), Err(libc::EEXIST));
    std::fs::write(c.path("d/f"), b"x").unwrap();
    c.walk(0, 1, &["d"]).unwrap();
    let e = Enc::default().u32(1).s(b"f").u32(0).s(b"g");
    c.rpc(t::RENAMEAT, e).unwrap();
    assert!(c.path("g").exists() && !c.path("d/f").exists());
    assert_eq!(c.unlinkat(0, "d", 0x200), Ok(()));
    assert!(!c.path("d").exists());
    assert_eq!(c.unlinkat(0, "g", 0x200), Err(libc::ENOTDIR));
    assert_eq!(c.unlinkat(0, "g", 0x1), Err(libc::EINVAL));
    assert_eq!(c.unlinkat(0, "g", 0), Ok(()));
    assert_eq!(c.unlinkat(0, "g", 0), Err(libc::ENOENT));
}

#[test]
fn test_unlinkat_nonempty_dir_fails() {
    let mut c = Client::new();
    std::fs::create_dir_all(c.path("d/e")).unwrap();
    assert_eq!(c.unlinkat(0, "d", 0x200), Err(libc::ENOTEMPTY));
}

#[test]
fn test_rename_and_remove_by_fid() {
    let mut c = Client::new();
    std::fs::create_dir(c.path("d")).unwrap();
    std::fs::write(c.path("f"), b"x").unwrap();
    c.walk(0, 1, &["f"]).unwrap();
    c.walk(0, 2, &["d"]).unwrap();
    c.rpc(t::RENAME, Enc::default().u32(1).u32(2).s(b"moved"))
        .unwrap();
    assert!(c.path("d/moved").exists() && !c.path("f").exists());
    // The fid follows its file: removing it removes d/moved.
    c.rpc(t::REMOVE, Enc::default().u32(1)).unwrap();
    assert!(!c.path("d/moved").exists());
    assert_eq!(c.getattr(1).err(), Some(libc::EBADF), "Tremove clunks");
    // A name that no longer refers to the fid's file is not removed.
    std::fs::write(c.path("a"), b"").unwrap();
    c.walk(0, 3, &["a"]).unwrap();
    // (Kept under another name so the new file cannot reuse its inode number.)
    std::fs::rename(c.path("a"), c.path("a.old")).unwrap();
    std::fs::write(c.path("a"), b"new").unwrap();
    assert_eq!(
        c.rpc(t::REMOVE, Enc::default().u32(3)).err(),
        Some(libc::ENOENT)
    );
    assert!(c.path("a").exists());
    assert_eq!(
        c.getattr(3).err(),
        Some(libc::EBADF),
        "clunked even on failure"
    );
    // The root cannot be removed.
    c.walk(0, 4, &[]).unwrap();
    assert_eq!(
        c.rpc(t::REMOVE, Enc::default().u32(4)).err(),
        Some(libc::EINVAL)
    );
    assert!(c.root.exists());
}

/// A Tsetattr body.
fn setattr(
    fid: u32,
    valid: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (u64, u64),
) -> Enc {
    Enc::default()
        .u32(fid)
        .u32(valid)
        .u32(mode)
        .u32(uid)
        .u32(gid)
        .u64(size)
        .u64(0)
        .u64(0)
        .u64(mtime.0)
        .u64(mtime.1)
}

#[test]
fn test_setattr_truncate_chmod_chown_times() {
    let mut c = Client::new();
    std::fs::write(c.path("f"), b"0123456789").unwrap();
    c.walk(0, 1, &["f"]).unwrap();
    // size | mode | uid | gid | mtime | mtime_set
    let valid = 0x8 | 0x1 | 0x2 | 0x4 | 0x20 | 0x100;
    c.rpc(
        t::SETATTR,
        setattr(1, valid, 0o1750, 77, 88, 4, (1_000_000, 5)),
    )
    .unwrap();
    let md = lstat(&c.path("f"));
    assert_eq!(md.len(), 4);
    assert_eq!((md.uid(), md.gid()), (77, 88));
    assert_eq!(md.mode() & 0o7777, 0o1750);
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_000_000, 5));
    let a = c.getattr(1).unwrap();
    assert_eq!((a.size, a.mtime), (4, (1_000_000, 5)));
    // mtime without MTIME_SET means now.
    c.rpc(t::SETATTR, setattr(1, 0x20, 0, 0, 0, 0, (0, 0)))
        .unwrap();
    assert!(lstat(&c.path("f")).mtime() > 1_000_000);
    // Bad nanoseconds, directory truncation.
    let bad = setattr(1, 0x20 | 0x100, 0, 0, 0, 0, (1, 1_000_000_000));
    assert_eq!(c.rpc(t::SETATTR, bad).err(), Some(libc::EINVAL));
    assert_eq!(
        c.rpc(t::SETATTR, setattr(0, 0x8, 0, 0, 0, 0, (0, 0))).err(),
        Some(libc::EISDIR)
    );
}

#[test]
fn test_symlink_and_readlink() {
    let mut c = Client::with(false, 42);
    let q = c.symlink(0, "l", "some/where/../else", 43).unwrap();
    assert_eq!(q.ty, wire::QT_SYMLINK);
    let md = lstat(&c.path("l"));
    assert!(md.file_type().is_symlink());
    assert_eq!((md.uid(), md.gid()), (42, 43));
    c.walk(0, 1, &["l"]).unwrap();
    let body = c.rpc(t::READLINK, Enc::default().u32(1)).unwrap();
    assert_eq!(Reader::new(&body).string().unwrap(), b"some/where/../else");
    assert_eq!(
        c.rpc(t::READLINK, Enc::default().u32(0)).err(),
        Some(libc::EINVAL)
    );
    assert_eq!(c.symlink(0, "m", "", 0), Err(libc::EINVAL));
}

#[test]
fn test_mknod_fifo_socket_allowed_devices_refused() {
    let mut c = Client::new();
    let mknod =
        |name: &[u8], mode: u32| Enc::default().u32(0).s(name).u32(mode).u32(1).u32(3).u32(0);
    c.rpc(t::MKNOD, mknod(b"p", libc::S_IFIFO | 0o662)).unwrap();
    c.rpc(t::MKNOD, mknod(b"s", libc::S_IFSOCK | 0o600))
        .unwrap();
    c.rpc(t::MKNOD, mknod(b"r", libc::S_IFREG | 0o600)).unwrap();
    assert!(lstat(&c.path("p")).file_type().is_fifo());
    assert_eq!(
        lstat(&c.path("p")).mode() & 0o7777,
        0o662,
        "host umask must not apply"
    );
    assert!(lstat(&c.path("s")).file_type().is_socket());
    assert!(lstat(&c.path("r")).is_file());
    assert_eq!(
        c.rpc(t::MKNOD, mknod(b"c", libc::S_IFCHR | 0o600)).err(),
        Some(libc::EPERM)
    );
    assert_eq!(
        c.rpc(t::MKNOD, mknod(b"b", libc::S_IFBLK | 0o600)).err(),
        Some(libc::EPERM)
    );
    assert!(!c.path("c").exists() && !c.path("b").exists());
}

#[test]
fn test_link_statfs_fsync_lock_xattr_flush() {
    let mut c = Client::new();
    std::fs::write(c.path("f"), b"x").unwrap();
    c.walk(0, 1, &["f"]).unwrap();
    c.rpc(t::LINK, Enc::default().u32(0).u32(1).s(b"g"))
        .unwrap();
    assert_eq!(lstat(&c.path("g")).ino(), lstat(&c.path("f")).ino());
    assert_eq!(
        c.rpc(t::LINK, Enc::default().u32(0).u32(0).s(b"h")).err(),
        Some(libc::EPERM)
    );
    let body = c.rpc(t::STATFS, Enc::default().u32(0)).unwrap();
    assert_eq!(body.len(), 4 + 4 + 8 * 6 + 4);
    assert_eq!(
        c.rpc(t::FSYNC, Enc::default().u32(1).u32(0)).err(),
        Some(libc::EBADF)
    );
    c.lopen(1, O_RDWR).unwrap();
    c.rpc(t::FSYNC, Enc::default().u32(1).u32(1)).unwrap();
    c.rpc(t::FSYNC, Enc::default().u32(1)).unwrap();
    let lock = Enc::default()
        .u32(1)
        .u8(1)
        .u32(0)
        .u64(0)
        .u64(10)
        .u32(99)
        .s(b"guest");
    assert_eq!(c.rpc(t::LOCK, lock).unwrap(), [0]);
    let getlock = Enc::default()
        .u32(1)
        .u8(1)
        .u64(5)
        .u64(10)
        .u32(99)
        .s(b"guest");
    let body = c.rpc(t::GETLOCK, getlock).unwrap();
    let mut r = Reader::new(&body);
    assert_eq!(r.u8().unwrap(), 2, "F_UNLCK");
    assert_eq!(
        (r.u64().unwrap(), r.u64().unwrap(), r.u32().unwrap()),
        (5, 10, 99)
    );
    assert_eq!(r.string().unwrap(), b"guest");
    let xw = Enc::default().u32(1).u32(5).s(b"user.x");
    assert_eq!(c.rpc(t::XATTRWALK, xw).err(), Some(libc::EOPNOTSUPP));
    assert_eq!(c.rpc(t::FLUSH, Enc::default().u16(3)).unwrap(), b"");
    assert_eq!(
        c.rpc(112, Enc::default().u32(1).u8(0)).err(),
        Some(libc::EOPNOTSUPP),
        "Topen"
    );
    assert_eq!(c.rpc(t::AUTH, Enc::default()).err(), Some(libc::EOPNOTSUPP));
}
