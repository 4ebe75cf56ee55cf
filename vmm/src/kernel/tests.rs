use std::os::unix::fs::symlink;

use super::*;

/// A minimal little-endian ELF64 file: header, one PT_NOTE program header, the notes.
fn tiny_elf(notes: &[(&[u8], u32, &[u8])]) -> Vec<u8> {
    let mut seg = Vec::new();
    for (name, kind, desc) in notes {
        let mut name = name.to_vec();
        name.push(0);
        seg.extend_from_slice(&(name.len() as u32).to_le_bytes());
        seg.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        seg.extend_from_slice(&kind.to_le_bytes());
        seg.extend_from_slice(&name);
        seg.resize(seg.len().next_multiple_of(4), 0);
        seg.extend_from_slice(desc);
        seg.resize(seg.len().next_multiple_of(4), 0);
    }
    let (ehsize, phentsize) = (64usize, 56usize);
    let note_off = ehsize + phentsize;
    let mut elf = vec![0u8; note_off];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[0x20..0x28].copy_from_slice(&(ehsize as u64).to_le_bytes()); // e_phoff
    elf[0x36..0x38].copy_from_slice(&(phentsize as u16).to_le_bytes());
    elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = ehsize;
    elf[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    elf[ph + 8..ph + 16].copy_from_slice(&(note_off as u64).to_le_bytes()); // p_offset
    elf[ph + 32..ph + 40].copy_from_slice(&(seg.len() as u64).to_le_bytes()); // p_filesz
    elf.extend_from_slice(&seg);
    elf
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn test_resolve_flag_beats_env_and_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let flag = write(tmp.path(), "flag", b"k");
    let env = write(tmp.path(), "env", b"k");
    write(tmp.path(), "cache/kernels/abc/vmlinux", b"k");
    let k = resolve_from(Some(&flag), Some(env.into()), &tmp.path().join("cache")).unwrap();
    assert_eq!((k.path, k.source), (flag, KernelSource::Flag));
}

#[test]
fn test_resolve_env_beats_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let env = write(tmp.path(), "env", b"k");
    write(tmp.path(), "cache/kernels/abc/vmlinux", b"k");
    let k = resolve_from(None, Some(env.clone().into()), &tmp.path().join("cache")).unwrap();
    assert_eq!((k.path, k.source), (env, KernelSource::Env));
}

#[test]
fn test_resolve_empty_env_falls_through_to_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cached = write(tmp.path(), "cache/kernels/abc/vmlinux", b"k");
    let k = resolve_from(None, Some(OsString::new()), &tmp.path().join("cache")).unwrap();
    assert_eq!((k.path, k.source), (cached, KernelSource::Cache));
}

#[test]
fn test_resolve_cache_prefers_default_link() {
    let tmp = tempfile::tempdir().unwrap();
    let kernels = tmp.path().join("kernels");
    write(&kernels, "old/vmlinux", b"k");
    write(&kernels, "new/vmlinux", b"k");
    symlink("old", kernels.join("default")).unwrap();
    let k = resolve_from(None, None, tmp.path()).unwrap();
    assert_eq!(k.path, kernels.join("default/vmlinux"));
    assert_eq!(
        std::fs::canonicalize(&k.path).unwrap(),
        std::fs::canonicalize(kernels.join("old/vmlinux")).unwrap()
    );
}

#[test]
fn test_resolve_cache_without_link_takes_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let kernels = tmp.path().join("kernels");
    let old = write(&kernels, "aaa/vmlinux", b"k");
    let new = write(&kernels, "bbb/vmlinux", b"k");
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(past)
        .unwrap();
    write(&kernels, ".build/ccc/vmlinux", b"scratch, never chosen");
    let k = resolve_from(None, None, tmp.path()).unwrap();
    assert_eq!(k.path, new);
}

#[test]
fn test_resolve_nothing_is_not_found_with_build_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let err = resolve_from(None, None, tmp.path()).unwrap_err();
    assert!(matches!(err, KernelError::NotFound));
    assert!(err.to_string().contains("kernels/build.sh"));
}

#[test]
fn test_resolve_missing_flag_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = resolve_from(Some(&tmp.path().join("nope")), None, tmp.path()).unwrap_err();
    assert!(matches!(err, KernelError::Missing { .. }));
}

#[test]
fn test_pvh_entry_found_in_xen_note() {
    let tmp = tempfile::tempdir().unwrap();
    let elf = tiny_elf(&[
        (b"GNU", 3, &[1, 2, 3, 4, 5, 6, 7, 8]),
        (b"Xen", 6, b"linux\0"),
        (
            b"Xen",
            XEN_ELFNOTE_PHYS32_ENTRY,
            &0x0100_0340u32.to_le_bytes(),
        ),
    ]);
    let p = write(tmp.path(), "vmlinux", &elf);
    assert_eq!(pvh_entry(&p).unwrap(), Some(0x0100_0340));
}

#[test]
fn test_pvh_entry_absent_without_the_note() {
    let tmp = tempfile::tempdir().unwrap();
    let other_owner = tiny_elf(&[(b"Linux", XEN_ELFNOTE_PHYS32_ENTRY, &[0, 0, 0, 1])]);
    let other_type = tiny_elf(&[(b"Xen", 17, &[0, 0, 0, 1])]);
    for (name, bytes) in [("a", other_owner), ("b", other_type)] {
        let p = write(tmp.path(), name, &bytes);
        assert_eq!(pvh_entry(&p).unwrap(), None, "{name}");
    }
}

#[test]
fn test_pvh_entry_none_for_bzimage_and_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bz = vec![0u8; 0x300];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    let p = write(tmp.path(), "bzImage", &bz);
    assert_eq!(pvh_entry(&p).unwrap(), None);
    // Truncated and lying headers must not panic.
    let mut elf = tiny_elf(&[(b"Xen", XEN_ELFNOTE_PHYS32_ENTRY, &[1, 2, 3, 4])]);
    elf.truncate(elf.len() - 6);
    assert_eq!(elf_notes(&elf).len(), 0);
    let mut lying = tiny_elf(&[]);
    lying[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
    lying[0x38..0x3a].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(elf_notes(&lying).is_empty());
    let mut huge_note = tiny_elf(&[(b"Xen", 18, &[1, 2, 3, 4])]);
    let n = huge_note.len() - 20;
    huge_note[n..n + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(elf_notes(&huge_note).is_empty());
}

#[test]
fn test_report_names_source_pvh_and_build_info() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "k/vmlinux", b"x");
    let choice = KernelChoice {
        path: p,
        source: KernelSource::Env,
    };
    let info = vec![
        (
            "source".to_string(),
            "linux-source-6.1 6.1.192-2".to_string(),
        ),
        ("fragment_sha256".to_string(), "0123abcd".to_string()),
        ("built".to_string(), "2026-11-28T08:42:57Z".to_string()),
    ];
    let r = render_report(&choice, Some(0x100_0000), &info);
    for want in [
        "$ISOL_KERNEL",
        "PVH entry note",
        "0x1000000",
        "6.1.192-2",
        "0123abcd",
        "2026-11-28",
        "kernels/build.sh",
        "size:        1 bytes",
    ] {
        assert!(r.contains(want), "report lacks {want:?}:\n{r}");
    }
    let r = render_report(&choice, None, &[]);
    assert!(
        r.contains("no PVH entry note") && r.contains("not built by kernels/build.sh"),
        "{r}"
    );
}

#[test]
fn test_build_info_reads_key_value_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let k = write(tmp.path(), "vmlinux", b"x");
    write(
        tmp.path(),
        "info",
        b"source=linux-source-6.1 6.1.192-2\nkey=abc\nnot a pair\n",
    );
    let info = build_info(&k);
    assert_eq!(
        info,
        vec![
            ("source".into(), "linux-source-6.1 6.1.192-2".into()),
            ("key".into(), "abc".into())
        ]
    );
}
