//! Unit tests: profile parsing, compilation (run through a small classic-BPF interpreter,
//! so every syscall of the table is checked), and a forked child that installs the filter.

use super::profile::Action;
use super::*;

mod bpf;
mod child;

use bpf::{run, Call, X86_64};

const EPERM: u32 = 0x0005_0000 | 1;
const ALLOW: u32 = 0x7fff_0000;

fn default_filter() -> Filter {
    compile_profile(DEFAULT_PROFILE, "default", &workload_context()).unwrap()
}

fn nr(name: &str) -> i64 {
    syscalls::number(name).unwrap_or_else(|| panic!("{name} is not an x86_64 syscall"))
}

fn verdict(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    run(&f.insns, &Call::native(nr(name), args))
}

#[test]
fn test_syscall_table_sorted_and_known_numbers() {
    assert!(syscalls::X86_64.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(syscalls::number("read"), Some(0));
    assert_eq!(syscalls::number("clone3"), Some(435));
    assert_eq!(syscalls::number("chown32"), None);
}

#[test]
fn test_default_profile_names_are_all_x86_64_syscalls() {
    let v: serde_json::Value = serde_json::from_str(DEFAULT_PROFILE).unwrap();
    for entry in v["syscalls"].as_array().unwrap() {
        for n in entry["names"].as_array().unwrap() {
            let n = n.as_str().unwrap();
            assert!(
                syscalls::number(n).is_some(),
                "{n} is not an x86_64 syscall"
            );
        }
    }
}

#[test]
fn test_default_profile_allows_ordinary_calls() {
    let f = default_filter();
    for name in [
        "read",
        "write",
        "getpid",
        "execve",
        "exit_group",
        "mmap",
        "openat",
        "wait4",
    ] {
        assert_eq!(verdict(&f, name, [0; 6]), ALLOW, "{name}");
    }
    assert_eq!(
        verdict(&f, "chroot", [0; 6]),
        ALLOW,
        "CAP_SYS_CHROOT is kept"
    );
    let fork_flags = u64::try_from(libc::SIGCHLD).unwrap();
    assert_eq!(verdict(&f, "clone", [fork_flags, 0, 0, 0, 0, 0]), ALLOW);
    let thread = u64::try_from(libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND).unwrap();
    assert_eq!(verdict(&f, "clone", [thread, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(verdict(&f, "socket", [1, 1, 0, 0, 0, 0]), ALLOW, "AF_UNIX");
    for p in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(
            verdict(&f, "personality", [p, 0, 0, 0, 0, 0]),
            ALLOW,
            "{p:#x}"
        );
    }
}

#[test]
fn test_default_profile_denies_dockers_denied_calls_with_eperm() {
    let f = default_filter();
    for name in [
        "unshare",
        "setns",
        "mount",
        "umount2",
        "pivot_root",
        "keyctl",
        "add_key",
        "request_key",
        "io_uring_setup",
        "io_uring_enter",
        "perf_event_open",
        "bpf",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "userfaultfd",
        "open_by_handle_at",
        "kcmp",
        "process_madvise",
    ] {
        assert_eq!(verdict(&f, name, [0; 6]), EPERM, "{name}");
    }
    for name in [
        "reboot",
        "swapon",
        "syslog",
        "iopl",
        "ioperm",
        "acct",
        "settimeofday",
    ] {
        assert_eq!(verdict(&f, name, [0; 6]), EPERM, "{name}");
    }
    let newuser = u64::try_from(libc::CLONE_NEWUSER | libc::SIGCHLD).unwrap();
    assert_eq!(verdict(&f, "clone", [newuser, 0, 0, 0, 0, 0]), EPERM);
    let newns = u64::try_from(libc::CLONE_NEWNS).unwrap();
    assert_eq!(verdict(&f, "clone", [newns, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(
        verdict(&f, "socket", [40, 1, 0, 0, 0, 0]),
        EPERM,
        "AF_VSOCK"
    );
    let high = (1u64 << 32) | 40;
    assert_eq!(
        verdict(&f, "socket", [high, 1, 0, 0, 0, 0]),
        EPERM,
        "AF_VSOCK, high bits"
    );
    assert_eq!(
        verdict(&f, "personality", [0x0040_0000, 0, 0, 0, 0, 0]),
        EPERM
    );
    assert_eq!(verdict(&f, "clone3", [0; 6]), 0x0005_0000 | 38, "ENOSYS");
}

#[test]
fn test_default_profile_every_syscall_is_either_listed_or_eperm() {
    let f = default_filter();
    let profile: serde_json::Value = serde_json::from_str(DEFAULT_PROFILE).unwrap();
    let listed: Vec<&str> = profile["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["names"].as_array().unwrap().iter())
        .map(|n| n.as_str().unwrap())
        .collect();
    let with_args = ["socket", "personality", "clone", "clone3"];
    for (name, _) in syscalls::X86_64 {
        let v = verdict(&f, name, [0; 6]);
        if !listed.contains(name) {
            assert_eq!(v, EPERM, "{name} is not listed, so it must be EPERM");
        } else if !with_args.contains(name) {
            assert_eq!(v, ALLOW, "{name} is listed without arguments");
        }
    }
    for nr in (451..2000).chain([0x3fff_ffff, -1]) {
        assert_eq!(run(&f.insns, &Call::native(nr, [0; 6])), EPERM, "{nr}");
    }
}

#[test]
fn test_other_abis_are_denied_even_by_an_allow_all_profile() {
    let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#;
    let f = compile_profile(text, "t", &workload_context()).unwrap();
    let mkdir = nr("mkdir");
    assert_eq!(
        run(&f.insns, &Call::native(mkdir, [0; 6])),
        0x0005_0000 | 13
    );
    assert_eq!(run(&f.insns, &Call::native(nr("getpid"), [0; 6])), ALLOW);
    let x32 = Call::native(mkdir | 0x4000_0000, [0; 6]);
    assert_eq!(run(&f.insns, &x32), EPERM, "x32 mkdir");
    let i386 = Call {
        arch: 0x4000_0003,          // AUDIT_ARCH_I386
        ..Call::native(39, [0; 6])  // i386 mkdir
    };
    assert_eq!(run(&f.insns, &i386), EPERM, "i386 mkdir");
    assert_ne!(i386.arch, X86_64);
}

#[test]
fn test_more_restrictive_action_wins() {
    let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["getpid"],"action":"SCMP_ACT_ALLOW"},
        {"names":["getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
        {"names":["getppid"],"action":"SCMP_ACT_KILL_PROCESS",
         "args":[{"index":0,"value":7,"op":"SCMP_CMP_EQ"}]},
        {"names":["getppid"],"action":"SCMP_ACT_ERRNO"}]}"#;
    let f = compile_profile(text, "t", &workload_context()).unwrap();
    assert_eq!(verdict(&f, "getpid", [0; 6]), 0x0005_0000 | 13);
    assert_eq!(verdict(&f, "getppid", [7, 0, 0, 0, 0, 0]), 0x8000_0000);
    assert_eq!(verdict(&f, "getppid", [8, 0, 0, 0, 0, 0]), EPERM);
}

#[test]
fn test_docker_includes_and_excludes_follow_caps_and_arch() {
    let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
      "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]}],
      "syscalls":[
        {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
        {"names":["chroot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_CHROOT"]}},
        {"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64","x32"]}},
        {"names":["getpid"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}},
        {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}},
        {"names":["getuid"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_CHOWN"]}},
        {"names":["gettid", "chown32"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
    let f = compile_profile(text, "t", &workload_context()).unwrap();
    assert_eq!(verdict(&f, "mount", [0; 6]), EPERM);
    assert_eq!(verdict(&f, "chroot", [0; 6]), ALLOW);
    assert_eq!(verdict(&f, "arch_prctl", [0; 6]), ALLOW);
    assert_eq!(verdict(&f, "getpid", [0; 6]), EPERM);
    assert_eq!(verdict(&f, "ptrace", [0; 6]), ALLOW);
    assert_eq!(verdict(&f, "getuid", [0; 6]), EPERM);
    assert_eq!(verdict(&f, "gettid", [0; 6]), ALLOW);
}

fn profile_err(text: &str) -> String {
    let e = compile_profile(text, "/p.json", &workload_context()).unwrap_err();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[test]
fn test_profile_errors_name_the_field() {
    let cases = [
        (
            r#"{"defaultAction":"SCMP_ACT_NOPE"}"#,
            "defaultAction: \"SCMP_ACT_NOPE\" is not a seccomp action",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"ALLOW"}]}"#,
            "syscalls[0].action: \"ALLOW\" is not a seccomp action",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",
               "args":[{"index":0,"value":1,"op":"SCMP_CMP_ALMOST"}]}]}"#,
            "syscalls[0].args[0].op: \"SCMP_CMP_ALMOST\" is not a comparison",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",
               "args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
            "syscalls[0].args[0].index: \"6\" is not an argument",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
            "syscalls[0].action: \"SCMP_ACT_NOTIFY\" is not supported",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#,
            "architectures[0]",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_AARCH64"]}"#,
            "does not include SCMP_ARCH_X86_64",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#,
            "defaultAction errnoRet",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","sycalls":[]}"#,
            "unknown field `sycalls`",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent"}"#,
            "listenerPath",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}"#,
            "syscalls[0].names",
        ),
        ("not json", "Invalid seccomp profile /p.json: expected"),
    ];
    for (text, want) in cases {
        let msg = profile_err(text);
        assert!(msg.contains(want), "{text}\n=> {msg}\nwanted {want:?}");
        assert!(msg.starts_with("Invalid seccomp profile /p.json"), "{msg}");
    }
}

#[test]
fn test_default_bpf_is_what_default_json_compiles_to() {
    let compiled = default_filter().to_bytes();
    if std::env::var_os("ISOL_WRITE_DEFAULT_BPF").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/seccomp/default.bpf");
        std::fs::write(path, &compiled).unwrap();
        return;
    }
    assert!(
        compiled == DEFAULT_BPF,
        "src/seccomp/default.bpf is stale: ISOL_WRITE_DEFAULT_BPF=1 cargo test -p isol-sandbox --lib seccomp"
    );
}

#[test]
fn test_filter_bytes_round_trip() {
    let f = default_filter();
    let b = f.to_bytes();
    assert_eq!(b.len(), f.len() * 8);
    assert_eq!(Filter::from_bytes(&b).unwrap(), f);
    assert!(Filter::from_bytes(&b[..7]).is_err());
    assert!(Filter::from_bytes(&[]).is_err());
}

#[test]
fn test_for_spec_unconfined_is_none_and_default_compiles() {
    assert!(for_spec(&Seccomp::Unconfined).unwrap().is_none());
    let f = for_spec(&Seccomp::Default).unwrap().unwrap();
    assert_eq!(f.to_bytes(), DEFAULT_BPF);
    assert!(f.len() < 4096);
}

#[test]
fn test_actions_order_is_kernel_precedence() {
    let mut a = [
        Action::Allow,
        Action::Log,
        Action::Trace(1),
        Action::Errno(1),
        Action::Trap,
        Action::KillThread,
        Action::KillProcess,
    ];
    a.sort();
    assert_eq!(a[0], Action::KillProcess);
    assert_eq!(a[6], Action::Allow);
}
