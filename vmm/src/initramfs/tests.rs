use std::os::unix::fs::PermissionsExt;

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    rdev: (u32, u32),
    data: Vec<u8>,
}

/// Parses a newc archive back, checking magic, alignment and the trailer.
fn parse(mut b: &[u8]) -> Vec<Entry> {
    let total = b.len();
    let mut out = Vec::new();
    loop {
        assert_eq!((total - b.len()) % 4, 0, "header not 4-aligned");
        assert_eq!(&b[..6], b"070701");
        let f = |i: usize| {
            u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                .unwrap()
        };
        let (mode, uid, gid, nlink, size, rmaj, rmin, namesize) =
            (f(1), f(2), f(3), f(4), f(6), f(9), f(10), f(11));
        let name_end = 110 + namesize as usize;
        let name = std::str::from_utf8(&b[110..name_end - 1])
            .unwrap()
            .to_string();
        assert_eq!(b[name_end - 1], 0);
        let data_start = name_end.div_ceil(4) * 4;
        let data_end = data_start + size as usize;
        let data = b[data_start..data_end].to_vec();
        b = &b[(data_end.div_ceil(4) * 4).min(b.len())..];
        if name == "TRAILER!!!" {
            assert!(b.is_empty());
            return out;
        }
        out.push(Entry {
            name,
            mode,
            uid,
            gid,
            nlink,
            rdev: (rmaj, rmin),
            data,
        });
    }
}

fn find<'a>(es: &'a [Entry], name: &str) -> &'a Entry {
    es.iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn test_cpio_round_trip_files_symlinks_modes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/busybox"), b"\x7fELF\0binary").unwrap();
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::hard_link(root.join("bin/busybox"), root.join("bin/hard")).unwrap();
    std::fs::write(root.join("odd"), b"abc").unwrap(); // 3 bytes: needs padding
    std::fs::create_dir(root.join("empty")).unwrap();
    std::os::unix::fs::chown(root.join("odd"), Some(1000), Some(100)).unwrap();

    let mut w = CpioWriter::new(Vec::new());
    let stats = w.tree(&root, "isol/rootfs").unwrap();
    let es = parse(&w.finish().unwrap());

    assert_eq!(
        stats,
        TreeStats {
            entries: 7,
            skipped: 0
        }
    );
    let bb = find(&es, "isol/rootfs/bin/busybox");
    assert_eq!(bb.mode, 0o104_755);
    assert_eq!(bb.data, b"\x7fELF\0binary");
    let sh = find(&es, "isol/rootfs/bin/sh");
    assert_eq!(sh.mode, 0o120_777);
    assert_eq!(sh.data, b"busybox");
    let hard = find(&es, "isol/rootfs/bin/hard");
    assert_eq!((hard.nlink, hard.data.as_slice()), (1, bb.data.as_slice()));
    let odd = find(&es, "isol/rootfs/odd");
    assert_eq!(
        (odd.uid, odd.gid, odd.data.as_slice()),
        (1000, 100, b"abc".as_slice())
    );
    assert_eq!(find(&es, "isol/rootfs/empty").mode & S_IFMT, S_IFDIR);
    // Parents come before children.
    let pos = |n: &str| es.iter().position(|e| e.name == n).unwrap();
    assert!(pos("isol/rootfs") < pos("isol/rootfs/bin"));
    assert!(pos("isol/rootfs/bin") < pos("isol/rootfs/bin/sh"));
}

#[test]
fn test_cpio_tree_skips_fifo_and_leaves_source_untouched() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::fs::write(t.path().join("f"), b"x").unwrap();
    let before = std::fs::metadata(t.path().join("f"))
        .unwrap()
        .modified()
        .unwrap();
    let mut w = CpioWriter::new(Vec::new());
    let stats = w.tree(t.path(), "r").unwrap();
    let es = parse(&w.finish().unwrap());
    assert_eq!(
        stats,
        TreeStats {
            entries: 2,
            skipped: 1
        }
    );
    assert!(es.iter().all(|e| e.name != "r/fifo"));
    assert_eq!(
        std::fs::metadata(t.path().join("f"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    assert!(fifo.exists());
}

#[test]
fn test_write_initramfs_has_init_console_config_rootfs() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"x\n").unwrap();
    let init = t.path().join("init-bin");
    std::fs::write(&init, b"INIT").unwrap();
    let out = t.path().join("initramfs.cpio");
    let contents = Contents {
        init: &init,
        config: "cfg\n",
        rootfs: &root,
    };
    let size = write_initramfs(&out, &contents).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert!(size as usize <= bytes.len());
    let es = parse(&bytes);
    assert_eq!(find(&es, "init").data, b"INIT");
    assert_eq!(find(&es, "init").mode, 0o100_755);
    let console = find(&es, "dev/console");
    assert_eq!((console.mode, console.rdev), (0o020_600, (5, 1)));
    assert_eq!(find(&es, "isol/config").data, b"cfg\n");
    assert_eq!(find(&es, "isol/rootfs/etc/hostname").data, b"x\n");
}

#[test]
fn test_write_initramfs_missing_rootfs_names_path() {
    let t = tempfile::tempdir().unwrap();
    let init = t.path().join("init");
    std::fs::write(&init, b"I").unwrap();
    let missing = t.path().join("nope");
    let contents = Contents {
        init: &init,
        config: "",
        rootfs: &missing,
    };
    let e = write_initramfs(&t.path().join("o"), &contents).unwrap_err();
    assert!(
        matches!(e, InitramfsError::Read { ref path, .. } if *path == missing),
        "{e}"
    );
}
