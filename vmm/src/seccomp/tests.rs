use super::*;

const VCPU_JSON: &str = include_str!("vcpu.json");

/// `_IOR(0xAE, nr, T)`: read direction, size of T, KVM's ioctl type.
fn kvm_ior<T>(nr: u32) -> u32 {
    let size = u32::try_from(std::mem::size_of::<T>()).expect("small struct");
    (2 << 30) | (size << 16) | (0xAE << 8) | nr
}

#[test]
fn test_vcpu_list_ioctl_numbers_are_kvms() {
    let wanted = [
        ("KVM_RUN", 0xAE80),
        ("KVM_GET_REGS", kvm_ior::<kvm_bindings::kvm_regs>(0x81)),
        ("KVM_GET_SREGS", kvm_ior::<kvm_bindings::kvm_sregs>(0x83)),
        (
            "KVM_GET_MP_STATE",
            kvm_ior::<kvm_bindings::kvm_mp_state>(0x98),
        ),
    ];
    for (name, nr) in wanted {
        assert!(
            VCPU_JSON.contains(&format!("\"val\": {nr},")),
            "vcpu.json lacks {name} ({nr:#x})"
        );
    }
}

#[test]
fn test_every_class_has_a_program_ending_in_a_return() {
    for class in ThreadClass::ALL {
        let p = class.program();
        assert!(p.len() > 10, "{}: {} instructions", class.name(), p.len());
        // BPF_RET | BPF_K: the default action (trap) closes every program.
        assert_eq!(p[p.len() - 1].code, 0x06, "{}", class.name());
        assert_eq!(p[p.len() - 1].k, libc::SECCOMP_RET_TRAP, "{}", class.name());
    }
}

#[test]
fn test_vcpu_serving_virtio_is_the_larger_program() {
    assert!(ThreadClass::VcpuServingVirtio.program().len() > ThreadClass::Vcpu.program().len());
    assert!(ThreadClass::VcpuServingVirtio.program().len() > ThreadClass::Virtio.program().len());
}

#[test]
fn test_names_table_matches_libc_numbers() {
    let some = [
        (libc::SYS_read, "read"),
        (libc::SYS_socket, "socket"),
        (libc::SYS_execve, "execve"),
        (libc::SYS_openat, "openat"),
        (libc::SYS_openat2, "openat2"),
        (libc::SYS_ioctl, "ioctl"),
    ];
    for (nr, name) in some {
        assert_eq!(names::NAMES[usize::try_from(nr).unwrap()], name);
    }
}

#[test]
fn test_mode_confines_main_only_when_on() {
    assert!(VmmSeccomp::On.confines(ThreadClass::Main));
    assert!(!VmmSeccomp::SpawnedThreadsOnly.confines(ThreadClass::Main));
    assert!(VmmSeccomp::SpawnedThreadsOnly.confines(ThreadClass::Vcpu));
    assert!(ThreadClass::ALL
        .iter()
        .all(|&c| !VmmSeccomp::Off.confines(c)));
    assert_eq!(VmmSeccomp::default(), VmmSeccomp::On);
}

#[test]
fn test_report_formats_numbers_without_allocating() {
    let mut r = Report::new();
    r.push(b"nr ");
    r.push_number(41);
    r.push(b" ");
    r.push_number(0);
    r.push(b" ");
    r.push_number(-7);
    assert_eq!(&r.buf[..r.len], b"nr 41 0 -7");
    let mut full = Report::new();
    full.push(&[b'x'; 300]);
    assert_eq!(full.len, 256, "a long message is cut, never overflows");
}
