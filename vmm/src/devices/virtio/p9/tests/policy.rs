//! What a volume lets the guest do to the host: like a `nosuid,nodev` bind mount (no
//! set-id files, no device nodes, the mount point's mode and owner fixed); requests whose
//! reply cannot fit have no effect; open files are bounded per VM.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::devices::virtio::p9::ServerGroup;

/// Tsetattr of the mode (valid = MODE) of `fid` to `mode`.
fn chmod(fid: u32, mode: u32) -> Enc {
    let e = Enc::default().u32(fid).u32(0x1).u32(mode).u32(0).u32(0);
    e.u64(0).u64(0).u64(0).u64(0).u64(0)
}

/// Tsetattr of the owner (valid = UID | GID) of `fid`.
fn chown(fid: u32, uid: u32, gid: u32) -> Enc {
    let e = Enc::default()
        .u32(fid)
        .u32(0x2 | 0x4)
        .u32(0)
        .u32(uid)
        .u32(gid);
    e.u64(0).u64(0).u64(0).u64(0).u64(0)
}

/// Tmknod of `name` in `dfid` with `mode` (type and permissions).
fn mknod(dfid: u32, name: &[u8], mode: u32) -> Enc {
    let e = Enc::default().u32(dfid).s(name).u32(mode);
    e.u32(1).u32(3).u32(0)
}

/// The permission bits of `rel` under the root, on the host.
fn host_mode(c: &Client, rel: &str) -> u32 {
    lstat(&c.path(rel)).permissions().mode() & 0o7777
}

#[test]
fn test_created_files_and_dirs_lose_setid_bits() {
    let mut c = Client::new();
    c.walk(0, 1, &[]).unwrap();
    c.lcreate(1, "suid", O_RDWR, 0o6755, 0).unwrap();
    assert_eq!(host_mode(&c, "suid"), 0o755);
    c.mkdir(0, "sgid", 0o3775, 0).unwrap();
    assert_eq!(host_mode(&c, "sgid"), 0o1775);
    c.rpc(t::MKNOD, mknod(0, b"reg", libc::S_IFREG | 0o6644))
        .unwrap();
    assert_eq!(host_mode(&c, "reg"), 0o644);
    c.rpc(t::MKNOD, mknod(0, b"fifo", libc::S_IFIFO | 0o4666))
        .unwrap();
    assert_eq!(host_mode(&c, "fifo"), 0o666);
}

#[test]
fn test_setattr_cannot_set_setid_bits() {
    let mut c = Client::new();
    std::fs::write(c.path("sh"), b"#!/bin/sh\n").unwrap();
    std::fs::create_dir(c.path("d")).unwrap();
    c.walk(0, 1, &["sh"]).unwrap();
    c.walk(0, 2, &["d"]).unwrap();
    for mode in [0o4755, 0o2755, 0o6777] {
        c.rpc(t::SETATTR, chmod(1, mode)).unwrap();
        assert_eq!(host_mode(&c, "sh"), mode & 0o777, "{mode:o}");
        c.rpc(t::SETATTR, chmod(2, mode)).unwrap();
        assert_eq!(host_mode(&c, "d"), mode & 0o777, "{mode:o}");
    }
    c.rpc(t::SETATTR, chmod(1, 0o1755)).unwrap();
    assert_eq!(
        host_mode(&c, "sh"),
        0o1755,
        "the sticky bit is not a set-id bit"
    );
}

#[test]
fn test_device_nodes_cannot_be_made() {
    let mut c = Client::new();
    for (name, ty) in [(&b"null"[..], libc::S_IFCHR), (b"sda", libc::S_IFBLK)] {
        let e = c.rpc(t::MKNOD, mknod(0, name, ty | 0o666)).err();
        assert_eq!(e, Some(libc::EPERM));
    }
    assert_eq!(std::fs::read_dir(&c.root).unwrap().count(), 0);
}

#[test]
fn test_share_root_mode_and_owner_cannot_change() {
    let mut c = Client::new();
    let before = lstat(&c.root);
    c.walk(0, 1, &[]).unwrap();
    std::fs::create_dir(c.path("d")).unwrap();
    c.walk(0, 2, &["d", ".."]).unwrap();
    for fid in [0, 1, 2] {
        let e = c.rpc(t::SETATTR, chmod(fid, 0o6777)).err();
        assert_eq!(e, Some(libc::EPERM), "chmod fid {fid}");
        let e = c.rpc(t::SETATTR, chown(fid, 1000, 1000)).err();
        assert_eq!(e, Some(libc::EPERM), "chown fid {fid}");
    }
    let after = lstat(&c.root);
    assert_eq!(
        (after.mode(), after.uid(), after.gid()),
        (before.mode(), before.uid(), before.gid())
    );
    // Below the root the guest owns what it is allowed to.
    c.walk(0, 3, &["d"]).unwrap();
    c.rpc(t::SETATTR, chown(3, 1000, 1000)).unwrap();
    assert_eq!(lstat(&c.path("d")).uid(), 1000);
}

/// Sends `ty` with `body` allowing a reply of at most `cap` bytes; expects `EMSGSIZE`.
fn assert_too_big(c: &mut Client, ty: u8, body: Enc, cap: usize) {
    let reply = c.raw(&msg(ty, TAG, &body.0), cap);
    assert_eq!(
        decode(&reply, ty, TAG, cap),
        Err(libc::EMSGSIZE),
        "type {ty}"
    );
}

#[test]
fn test_request_whose_reply_cannot_fit_has_no_effect() {
    let mut c = Client::new();
    std::fs::create_dir(c.path("d")).unwrap();
    // Rwalk of one qid is 22 bytes, Rlcreate 24, Rmkdir/Rsymlink/Rmknod/Rattach 20,
    // Rversion 21.
    let walk = Enc::default().u32(0).u32(5).u16(1).s(b"d");
    assert_too_big(&mut c, t::WALK, walk, 21);
    assert_eq!(c.getattr(5).err(), Some(libc::EBADF), "no fid inserted");
    c.walk(0, 1, &[]).unwrap();
    let create = Enc::default()
        .u32(1)
        .s(b"new")
        .u32(O_RDWR)
        .u32(0o644)
        .u32(0);
    assert_too_big(&mut c, t::LCREATE, create, 23);
    let mkdir = Enc::default().u32(0).s(b"newdir").u32(0o755).u32(0);
    assert_too_big(&mut c, t::MKDIR, mkdir, 19);
    let symlink = Enc::default().u32(0).s(b"newlink").s(b"x").u32(0);
    assert_too_big(&mut c, t::SYMLINK, symlink, 19);
    assert_too_big(
        &mut c,
        t::MKNOD,
        mknod(0, b"newnod", libc::S_IFIFO | 0o644),
        19,
    );
    assert_eq!(
        std::fs::read_dir(&c.root).unwrap().count(),
        1,
        "no file created"
    );
    let attach = Enc::default().u32(9).u32(wire::NOFID).s(b"").s(b"").u32(0);
    assert_too_big(&mut c, t::ATTACH, attach, 19);
    assert_eq!(c.getattr(9).err(), Some(libc::EBADF), "no fid attached");
    let version = Enc::default().u32(MSIZE).s(b"9P2000.L");
    assert_too_big(&mut c, t::VERSION, version, 20);
    // The session and the fid 1 Tlcreate did not turn into the new file are intact.
    assert_eq!(c.lopen(1, O_RDONLY).unwrap().ty, wire::QT_DIR);
    c.getattr(0).unwrap();
}

#[test]
fn test_open_files_of_all_servers_of_a_vm_share_one_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("f"), b"x").unwrap();
    }
    let group = ServerGroup::new(3);
    let mut ca = Client::in_group(&a, &group);
    let mut cb = Client::in_group(&b, &group);
    ca.open_at_root(1, "f", O_RDONLY).unwrap();
    cb.open_at_root(1, "f", O_RDONLY).unwrap();
    cb.open_at_root(2, "f", O_RDONLY).unwrap();
    assert_eq!(ca.open_at_root(2, "f", O_RDONLY), Err(libc::EMFILE));
    ca.walk(0, 3, &[]).unwrap();
    let create = ca.lcreate(3, "g", O_RDWR, 0o644, 0);
    assert_eq!(create, Err(libc::EMFILE));
    assert!(!a.join("g").exists(), "refused before creating");
    // Walked fids hold no fd: walking still works at the limit.
    ca.walk(0, 4, &["f"]).unwrap();
    cb.clunk(1).unwrap();
    ca.lopen(2, O_RDONLY).unwrap();
    assert_eq!(ca.read(2, 0, 10).unwrap(), b"x");
    // A Tversion (a remount) gives the server's slots back.
    cb.version(MSIZE, b"9P2000.L").unwrap();
    ca.lcreate(3, "g", O_RDWR, 0o644, 0).unwrap();
}
