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
fn test_cpio_round_trip_dirs_files_nodes_padding() {
    let mut w = CpioWriter::new(Vec::new());
    w.dir("isol", Meta::root(0o755)).unwrap();
    // 3 bytes and a 4-byte name: both need padding to 4.
    w.file_bytes("isol/odd", Meta::root(0o4755), b"abc")
        .unwrap();
    w.char_dev("dev/null", Meta::root(0o666), 1, 3).unwrap();
    let es = parse(&w.finish().unwrap());
    assert_eq!(es.len(), 3);
    assert_eq!(find(&es, "isol").mode & S_IFMT, S_IFDIR);
    let odd = find(&es, "isol/odd");
    assert_eq!((odd.mode, odd.nlink), (0o104_755, 1));
    assert_eq!(odd.data, b"abc");
    assert_eq!((odd.uid, odd.gid), (0, 0));
    assert_eq!(find(&es, "dev/null").rdev, (1, 3));
}

#[test]
fn test_write_initramfs_has_init_console_config_only() {
    let t = tempfile::tempdir().unwrap();
    let init = t.path().join("init-bin");
    std::fs::write(&init, b"INIT").unwrap();
    let out = t.path().join("initramfs.cpio");
    let contents = Contents {
        init: &init,
        config: "cfg\n",
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
    // The workload's root is served over virtio-9p, never packed.
    assert!(es.iter().all(|e| !e.name.starts_with("isol/rootfs")));
    assert_eq!(es.len(), 7, "{es:?}");
}

#[test]
fn test_write_initramfs_missing_init_names_path() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    let contents = Contents {
        init: &missing,
        config: "",
    };
    let e = write_initramfs(&t.path().join("o"), &contents).unwrap_err();
    assert!(
        matches!(e, InitramfsError::Read { ref path, .. } if *path == missing),
        "{e}"
    );
}
