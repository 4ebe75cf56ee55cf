//! Malformed, truncated and oversized messages, and reply size limits.

use super::*;

/// The errno and tag of an Rlerror reply.
fn lerror_of(reply: &[u8]) -> (u16, i32) {
    assert_eq!(reply.len(), wire::LERROR_LEN, "{reply:?}");
    assert_eq!(reply[4], RLERROR);
    let tag = u16::from_le_bytes([reply[5], reply[6]]);
    let errno = i32::from_le_bytes(reply[7..11].try_into().unwrap());
    (tag, errno)
}

#[test]
fn test_unreadable_header_gets_lerror_with_notag() {
    let mut c = Client::new();
    for req in [&[][..], &[1, 2, 3], &[7, 0, 0, 0, 100, 1]] {
        let reply = c.raw(req, 100);
        assert_eq!(lerror_of(&reply), (wire::NOTAG, libc::EPROTO));
    }
}

#[test]
fn test_bad_size_field_gets_lerror_with_tag() {
    let mut c = Client::new();
    let mut m = msg(t::CLUNK, 9, &Enc::default().u32(0).0);
    for size in [0u32, 6, 12, u32::MAX] {
        m[..4].copy_from_slice(&size.to_le_bytes());
        assert_eq!(lerror_of(&c.raw(&m, 100)), (9, libc::EPROTO), "size {size}");
    }
    // Fid 0 is still there: nothing was executed.
    c.getattr(0).unwrap();
}

#[test]
fn test_message_larger_than_msize_is_refused() {
    let mut c = Client::new();
    std::fs::write(c.path("f"), b"").unwrap();
    c.open_at_root(1, "f", O_RDWR).unwrap();
    let data = vec![b'x'; MSIZE as usize];
    assert_eq!(c.write(1, 0, &data), Err(libc::EINVAL));
    assert_eq!(std::fs::read(c.path("f")).unwrap().len(), 0);
    let fits = vec![b'x'; MSIZE as usize - HEADER_LEN - 16];
    assert_eq!(c.write(1, 0, &fits).unwrap() as usize, fits.len());
}

#[test]
fn test_reply_types_and_huge_counts_are_refused() {
    let mut c = Client::new();
    assert_eq!(
        c.rpc(t::WALK + 1, Enc::default()).err(),
        Some(libc::EOPNOTSUPP)
    );
    assert_eq!(c.rpc(255, Enc::default()).err(), Some(libc::EOPNOTSUPP));
    let walk = Enc::default().u32(0).u32(1).u16(u16::MAX);
    assert_eq!(c.rpc(t::WALK, walk).err(), Some(libc::EINVAL));
    let walk = Enc::default().u32(0).u32(1).u16(1).u16(u16::MAX).u8(b'a');
    assert_eq!(c.rpc(t::WALK, walk).err(), Some(libc::EPROTO));
    let write = Enc::default().u32(0).u64(0).u32(u32::MAX).u8(1);
    assert_eq!(c.rpc(t::WRITE, write).err(), Some(libc::EPROTO));
    let read = Enc::default().u32(0).u64(u64::MAX).u32(10);
    c.walk(0, 1, &[]).unwrap();
    c.lopen(1, O_RDONLY).unwrap();
    assert_eq!(c.rpc(t::READ, read).err(), Some(libc::EINVAL));
}

/// Valid requests (on fid 0, the root, and fid 1, an open file "f") that change nothing
/// and whose every field is mandatory.
fn seed_requests() -> Vec<(u8, Enc)> {
    vec![
        (t::VERSION, Enc::default().u32(MSIZE).s(b"9P2000.L")),
        (
            t::ATTACH,
            Enc::default().u32(2).u32(wire::NOFID).s(b"u").s(b"").u32(0),
        ),
        (
            t::WALK,
            Enc::default().u32(0).u32(2).u16(2).s(b"d").s(b".."),
        ),
        (t::GETATTR, Enc::default().u32(0).u64(0x7ff)),
        (t::READ, Enc::default().u32(1).u64(0).u32(10)),
        (
            t::WRITE,
            Enc::default().u32(1).u64(0).u32(3).u8(1).u8(2).u8(3),
        ),
        (t::READDIR, Enc::default().u32(3).u64(0).u32(1000)),
        (
            t::LCREATE,
            Enc::default().u32(3).s(b"new").u32(2).u32(0o644).u32(0),
        ),
        (t::MKDIR, Enc::default().u32(0).s(b"new").u32(0o755).u32(0)),
        (t::SYMLINK, Enc::default().u32(0).s(b"new").s(b"t").u32(0)),
        (
            t::MKNOD,
            Enc::default()
                .u32(0)
                .s(b"new")
                .u32(0o10644)
                .u32(0)
                .u32(0)
                .u32(0),
        ),
        (t::RENAMEAT, Enc::default().u32(0).s(b"f").u32(0).s(b"new")),
        (t::UNLINKAT, Enc::default().u32(0).s(b"f").u32(0)),
        (t::LINK, Enc::default().u32(0).u32(1).s(b"new")),
        (
            t::LOCK,
            Enc::default()
                .u32(1)
                .u8(0)
                .u32(0)
                .u64(0)
                .u64(0)
                .u32(1)
                .s(b"c"),
        ),
        (t::STATFS, Enc::default().u32(0)),
        (t::CLUNK, Enc::default().u32(1)),
    ]
}

#[test]
fn test_every_truncation_of_a_request_is_eproto_without_side_effects() {
    for (ty, body) in seed_requests() {
        for cut in 0..body.0.len() {
            let mut c = Client::new();
            std::fs::write(c.path("f"), b"abc").unwrap();
            std::fs::create_dir(c.path("d")).unwrap();
            c.open_at_root(1, "f", O_RDWR).unwrap();
            c.open_at_root(3, "d", O_RDONLY).unwrap();
            let reply = c.raw(&msg(ty, TAG, &body.0[..cut]), MSIZE as usize);
            assert_eq!(
                lerror_of(&reply),
                (TAG, libc::EPROTO),
                "type {ty} cut at {cut}"
            );
            assert_eq!(std::fs::read(c.path("f")).unwrap(), b"abc");
            assert!(!c.path("new").exists());
            c.getattr(1).unwrap();
            c.getattr(0).unwrap();
        }
    }
}

#[test]
fn test_read_is_clamped_to_reply_capacity() {
    let mut c = Client::new();
    std::fs::write(c.path("f"), vec![7u8; 100_000]).unwrap();
    c.open_at_root(1, "f", O_RDONLY).unwrap();
    let read = msg(t::READ, TAG, &Enc::default().u32(1).u64(0).u32(u32::MAX).0);
    for cap in [11, 12, 100, 4096, 1 << 20] {
        let reply = c.raw(&read, cap);
        let body = decode(&reply, t::READ, TAG, cap).unwrap();
        let want = cap.min(MSIZE as usize) - HEADER_LEN - 4;
        assert_eq!(body.len() - 4, want, "cap {cap}");
    }
    assert!(c.raw(&read, 10).is_empty(), "no room even for Rlerror");
}

#[test]
fn test_readdir_and_other_replies_fit_reply_capacity() {
    let mut c = Client::new();
    for i in 0..50 {
        std::fs::write(c.path(&format!("entry-{i}")), b"").unwrap();
    }
    c.open_at_root(1, "..", O_RDONLY).unwrap();
    let rd = msg(
        t::READDIR,
        TAG,
        &Enc::default().u32(1).u64(0).u32(u32::MAX).0,
    );
    let reply = c.raw(&rd, 200);
    let body = decode(&reply, t::READDIR, TAG, 200).unwrap();
    assert!(body.len() > 4, "some entries fit");
    // A reply that cannot be shortened becomes an error when it does not fit.
    let target = "t".repeat(3000);
    c.symlink(0, "l", &target, 0).unwrap();
    c.walk(0, 2, &["l"]).unwrap();
    let rl = msg(t::READLINK, TAG, &Enc::default().u32(2).0);
    assert_eq!(lerror_of(&c.raw(&rl, 1000)), (TAG, libc::EMSGSIZE));
    let body = decode(&c.raw(&rl, 4000), t::READLINK, TAG, 4000).unwrap();
    assert_eq!(body.len(), 2 + 3000);
}

#[test]
fn test_small_negotiated_msize_bounds_replies() {
    let mut c = Client::new();
    assert_eq!(c.version(4096, b"9P2000.L").unwrap().0, 4096);
    c.attach(0, 0).unwrap();
    std::fs::write(c.path("f"), vec![1u8; 10_000]).unwrap();
    c.open_at_root(1, "f", O_RDONLY).unwrap();
    let read = msg(t::READ, TAG, &Enc::default().u32(1).u64(0).u32(10_000).0);
    let reply = c.raw(&read, 1 << 20);
    assert_eq!(reply.len(), 4096);
}
