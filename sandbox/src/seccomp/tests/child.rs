//! Forked children that install a filter (after no_new_privs, as the workload does) and
//! make real syscalls. A child exits 0 when every check holds, else the failed check's
//! number. Children make raw syscalls only (no allocation after fork).

use std::arch::asm;

use libc::{c_long, SYS_getpid};

use super::super::{compile_profile, install, workload_context, Filter, DEFAULT_PROFILE};

/// Forks; the child sets no_new_privs, installs `filter` (if any), runs `body` and exits
/// with its result. Returns the child's exit code (128+N for signal N).
fn in_child(filter: Option<&Filter>, body: fn() -> i32) -> i32 {
    // SAFETY: the child only makes raw syscalls and _exits; it touches no lock another
    // test thread may hold.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: prctl with integer arguments.
        let nnp = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let code = if nnp != 0 {
            100
        } else if filter.is_some_and(|f| install(f).is_err()) {
            101
        } else {
            body()
        };
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child into a local.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn fails_with(r: c_long, e: i32) -> bool {
    r == -1 && errno() == e
}

/// getpid through the i386 `int 0x80` gate: its i386 number is 20.
fn i386_getpid() -> i64 {
    let mut rax: i64 = 20;
    // SAFETY: int 0x80 with eax = 20 makes the i386 getpid call (or is refused by the
    // filter); it changes no memory, and the kernel may clobber only r8-r11 and rax.
    unsafe {
        asm!("int 0x80", inout("rax") rax, out("r8") _, out("r9") _, out("r10") _,
             out("r11") _, options(nostack));
    }
    rax
}

fn default_body() -> i32 {
    let null = std::ptr::null::<u8>();
    // SAFETY: raw syscalls with integer arguments or null pointers; each is refused by the
    // filter before the kernel reads anything, or fails harmlessly.
    unsafe {
        let checks: [(i32, bool); 9] = [
            (
                1,
                fails_with(
                    libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
                    libc::EPERM,
                ),
            ),
            (
                2,
                fails_with(libc::syscall(libc::SYS_keyctl, 0, -3, 0), libc::EPERM),
            ),
            (
                3,
                fails_with(
                    libc::syscall(libc::SYS_io_uring_setup, 1, null),
                    libc::EPERM,
                ),
            ),
            (
                4,
                fails_with(
                    libc::syscall(libc::SYS_perf_event_open, null, 0, -1, -1, 0),
                    libc::EPERM,
                ),
            ),
            (
                5,
                fails_with(libc::syscall(libc::SYS_bpf, 0, null, 0), libc::EPERM),
            ),
            (
                6,
                fails_with(
                    libc::syscall(libc::SYS_kexec_load, 0, 0, null, 0),
                    libc::EPERM,
                ),
            ),
            (
                7,
                fails_with(
                    libc::syscall(libc::SYS_mount, null, null, null, 0, null),
                    libc::EPERM,
                ),
            ),
            (
                8,
                fails_with(libc::syscall(libc::SYS_clone3, null, 0), libc::ENOSYS),
            ),
            (
                9,
                fails_with(libc::syscall(SYS_getpid | 0x4000_0000), libc::EPERM),
            ),
        ];
        if let Some((n, _)) = checks.iter().find(|(_, ok)| !ok) {
            return *n;
        }
        let pid = libc::syscall(SYS_getpid);
        if pid <= 0 {
            return 10;
        }
        let mut fds = [0; 2];
        if libc::pipe2(fds.as_mut_ptr(), 0) != 0 {
            return 11;
        }
        let mut b = [7u8];
        if libc::write(fds[1], b.as_ptr().cast(), 1) != 1 {
            return 12;
        }
        b[0] = 0;
        if libc::read(fds[0], b.as_mut_ptr().cast(), 1) != 1 || b[0] != 7 {
            return 13;
        }
    }
    if i386_getpid() != -i64::from(libc::EPERM) {
        return 14;
    }
    0
}

#[test]
fn test_installed_default_filter_denies_and_allows() {
    let f = compile_profile(DEFAULT_PROFILE, "default", &workload_context()).unwrap();
    assert_eq!(in_child(Some(&f), default_body), 0);
}

fn unshare_body() -> i32 {
    // SAFETY: unshare with a flag; the child exits right after.
    let r = unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) };
    i32::from(r != 0)
}

#[test]
fn test_without_filter_the_same_calls_work() {
    // The control: without a filter, unshare(CLONE_NEWUSER) succeeds, so the check above
    // measures the filter, not the host.
    assert_eq!(in_child(None, unshare_body), 0);
}

fn mkdir_body() -> i32 {
    let path = c"/proc/isol-seccomp-test/x";
    // SAFETY: mkdir of a path under /proc that cannot exist; x32 mkdir is refused.
    unsafe {
        if !fails_with(
            c_long::from(libc::mkdir(path.as_ptr(), 0o700)),
            libc::EACCES,
        ) {
            return 1;
        }
        let x32 = libc::syscall(libc::SYS_mkdir | 0x4000_0000, path.as_ptr(), 0o700);
        if !fails_with(x32, libc::EPERM) {
            return 2;
        }
        if libc::getpid() <= 0 {
            return 3;
        }
    }
    0
}

#[test]
fn test_installed_file_profile_deny_list() {
    let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#;
    let f = compile_profile(text, "t", &workload_context()).unwrap();
    assert_eq!(in_child(Some(&f), mkdir_body), 0);
}

#[test]
fn test_status_shows_filter_mode() {
    fn body() -> i32 {
        let mut buf = [0u8; 4096];
        // SAFETY: open/read/close of /proc/self/status into a local buffer.
        let n = unsafe {
            let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        let text = &buf[..usize::try_from(n).unwrap_or(0)];
        let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
        i32::from(!(has(b"Seccomp:\t2\n") && has(b"Seccomp_filters:\t1\n")))
    }
    let f = compile_profile(DEFAULT_PROFILE, "default", &workload_context()).unwrap();
    assert_eq!(in_child(Some(&f), body), 0);
}
