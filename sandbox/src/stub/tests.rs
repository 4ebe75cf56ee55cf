use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use super::*;
use crate::report::Report;
use crate::syscall::linux::LinuxSyscall;
use crate::syscall::Syscall;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Runs the stub from its sealed memfd in a child with `args`; returns the child's exit
/// code and what it wrote on fd 3.
fn run_stub(args: &[&str]) -> (i32, Vec<Report>) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let argv: Vec<CString> = args.iter().map(|a| c(a)).collect();
    let envp = [c("PATH=/nowhere")];
    // SAFETY: the child only makes system calls (dup2, execveat) and _exits; the test
    // harness's other threads hold no lock the child needs.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            // As in the workload: fd 3 first, then the memfd (which must not be fd 3).
            let _ = LinuxSyscall.report_fd_to_3(&w);
            let Ok(stub) = LinuxSyscall.stub_memfd() else {
                crate::supervisor::exit_now(199)
            };
            let e = LinuxSyscall.execve_fd(&stub, &argv, &envp);
            crate::supervisor::exit_now(200 + e as i32 % 50)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64];
            while let Ok(n @ 1..) = nix::unistd::read(&r, &mut chunk) {
                buf.extend_from_slice(&chunk[..n]);
            }
            let st = nix::sys::wait::waitpid(child, None).unwrap();
            let code = match st {
                nix::sys::wait::WaitStatus::Exited(_, c) => c,
                other => panic!("stub ended {other:?}"),
            };
            (code, Report::decode_all(&buf))
        }
    }
}

#[test]
fn test_stub_memfd_is_sealed() {
    let fd: OwnedFd = LinuxSyscall.stub_memfd().unwrap();
    let seals = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
    assert_eq!(seals, 0xf, "SEAL | SHRINK | GROW | WRITE");
    assert!(nix::unistd::write(&fd, b"x").is_err());
    assert!(fd.as_raw_fd() > 2);
}

#[test]
fn test_stub_reports_path_search_errno_like_exec_first() {
    // Nothing there: ENOENT, 127.
    assert_eq!(
        run_stub(&["/nowhere/a", "/nowhere/b", "", "a"]),
        (127, vec![Report::Exec(libc::ENOENT)])
    );
    // A directory: EACCES, remembered past a later ENOENT.
    assert_eq!(
        run_stub(&["/", "/nowhere/a", "", "a"]),
        (127, vec![Report::Exec(libc::EACCES)])
    );
    // Any other errno (ENOEXEC: neither ELF nor #!) ends the search: the shell after it
    // is not tried.
    let junk = std::env::temp_dir().join(format!("isol-stub-junk-{}", std::process::id()));
    std::fs::write(&junk, b"\x01\x02 not a program").unwrap();
    std::fs::set_permissions(&junk, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let got = run_stub(&[junk.to_str().unwrap(), "/bin/sh", "", "sh", "-c", "exit 0"]);
    let _ = std::fs::remove_file(&junk);
    assert_eq!(got, (127, vec![Report::Exec(libc::ENOEXEC)]));
    // No candidate at all.
    assert_eq!(
        run_stub(&["", "a"]),
        (127, vec![Report::Exec(libc::ENOENT)])
    );
    // No separator (e.g. the stub re-executed through /proc/self/exe): nothing runs.
    assert_eq!(run_stub(&["/proc/self/exe", "x"]).0, 127);
}

#[test]
fn test_stub_execs_the_first_runnable_candidate() {
    let sh = ["/bin/sh", "/usr/bin/sh"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("a shell");
    // The report fd is close-on-exec after the stub: the shell cannot write to fd 3.
    let (code, reports) = run_stub(&["/nowhere/sh", sh, "", "sh", "-c", "echo x >&3; exit 7"]);
    assert_eq!((code, reports), (7, vec![]));
}

#[test]
fn test_stub_bytes_match_its_source() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/stub/stub.sh");
    // GNU as and objcopy come with gcc (binutils), which the build already needs.
    let out = std::process::Command::new("sh")
        .arg(script)
        .output()
        .expect("run stub.sh");
    assert!(
        out.status.success(),
        "stub.sh failed (needs GNU as, objcopy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let bytes: Vec<u8> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| u8::from_str_radix(t.trim_start_matches("0x"), 16).unwrap())
        .collect();
    assert_eq!(
        bytes, STUB,
        "run sh sandbox/src/stub/stub.sh and update STUB"
    );
}

#[test]
fn test_argv_puts_the_separator_between() {
    let a = argv(&[c("/a/x"), c("/b/x")], &[c("x"), c("")]);
    assert_eq!(a, [c("/a/x"), c("/b/x"), c(""), c("x"), c("")]);
}
