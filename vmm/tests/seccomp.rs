//! The VMM's seccomp filters, for real (vmm/src/seccomp): every thread of a running
//! machine is confined (`Seccomp: 2` in /proc, one filter each: none stacked on the main
//! thread's), and a syscall outside a thread's list ends the process with exit 125 and a
//! message naming it. Each test body runs in a child process (this test binary re-executed
//! with `ISOL_VMM_TEST_CHILD=1`), since a filter can never be removed. The machine test
//! uses the tiny guests of tests/guests and runs on any /dev/kvm, PVM included.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isol_vmm::devices::virtio::{P9Device, RequestHandler, VirtioSlot};
use isol_vmm::seccomp::{self, ThreadClass};
use isol_vmm::{Machine, MachineConfig, MachineExit, VmmSeccomp};

/// Runs `body` in a child process and returns the child's output (the parent's view).
fn in_child(name: &str, body: fn()) -> Option<Output> {
    if std::env::var_os("ISOL_VMM_TEST_CHILD").is_some() {
        body();
        return None;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("ISOL_VMM_TEST_CHILD", "1")
        .output()
        .expect("re-run the test binary");
    Some(out)
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// In a child: confines a new thread as `class`, then runs `forbidden` there; the parent
/// expects exit 125 and the report naming `syscall`.
fn assert_forbidden(name: &str, class: &str, syscall: &str, body: fn()) {
    let Some(out) = in_child(name, body) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    let wanted =
        format!("seccomp filter ({class} thread) stopped the forbidden syscall {syscall} (");
    assert!(
        err.contains(&wanted),
        "wanted {wanted:?} in\n{}",
        text(&out)
    );
    assert!(!err.contains("REACHED"), "the syscall ran: {}", text(&out));
}

/// Confines a fresh thread as `class` and runs `f` in it (the child's test thread itself
/// stays free, so the harness can still report).
fn on_confined_thread(class: ThreadClass, f: fn()) {
    std::thread::spawn(move || {
        seccomp::install(class).expect("install the filter");
        f();
        eprintln!("REACHED past the forbidden syscall");
    })
    .join()
    .expect("the confined thread");
}

#[test]
fn test_vcpu_thread_socket_is_trapped_exit_125() {
    assert_forbidden(
        "test_vcpu_thread_socket_is_trapped_exit_125",
        "vcpu",
        "socket",
        || {
            on_confined_thread(ThreadClass::Vcpu, || {
                // SAFETY: socket(2) takes no pointers.
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            })
        },
    );
}

#[test]
fn test_vcpu_thread_open_of_a_host_path_is_trapped_exit_125() {
    assert_forbidden(
        "test_vcpu_thread_open_of_a_host_path_is_trapped_exit_125",
        "vcpu",
        "openat",
        || {
            on_confined_thread(ThreadClass::Vcpu, || {
                let _ = std::fs::File::open("/etc/passwd");
            })
        },
    );
}

#[test]
fn test_vcpu_thread_execve_is_trapped_exit_125() {
    assert_forbidden(
        "test_vcpu_thread_execve_is_trapped_exit_125",
        "vcpu",
        "execve",
        || {
            on_confined_thread(ThreadClass::Vcpu, || {
                let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
                // SAFETY: path and argv are NUL-terminated and live across the call; envp
                // may be null on Linux.
                unsafe { libc::execve(argv[0], argv.as_ptr(), std::ptr::null()) };
            })
        },
    );
}

#[test]
fn test_vcpu_thread_other_kvm_ioctl_is_trapped_exit_125() {
    assert_forbidden(
        "test_vcpu_thread_other_kvm_ioctl_is_trapped_exit_125",
        "vcpu",
        "ioctl",
        || {
            on_confined_thread(ThreadClass::Vcpu, || {
                // KVM_CREATE_VM = _IO(0xAE, 0x01), on any fd: the filter looks at the number.
                // SAFETY: the call takes no pointer argument.
                unsafe { libc::ioctl(0, 0xAE01, 0) };
            })
        },
    );
}

#[test]
fn test_virtio_thread_executable_mapping_is_trapped_exit_125() {
    assert_forbidden(
        "test_virtio_thread_executable_mapping_is_trapped_exit_125",
        "virtio",
        "mmap",
        || {
            on_confined_thread(ThreadClass::Virtio, || {
                let prot = libc::PROT_READ | libc::PROT_EXEC;
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                // SAFETY: a fresh anonymous mapping: no existing memory is affected.
                unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, flags, -1, 0) };
            })
        },
    );
}

#[test]
fn test_main_thread_cannot_create_a_vm_exit_125() {
    assert_forbidden(
        "test_main_thread_cannot_create_a_vm_exit_125",
        "main",
        "ioctl",
        || {
            on_confined_thread(ThreadClass::Main, || {
                // SAFETY: the call takes no pointer argument.
                unsafe { libc::ioctl(0, 0xAE01, 0) };
            })
        },
    );
}

#[test]
fn test_confined_thread_allowed_work_runs() {
    let Some(out) = in_child("test_confined_thread_allowed_work_runs", || {
        for class in ThreadClass::ALL {
            std::thread::spawn(move || {
                seccomp::install(class).expect("install the filter");
                // What every thread does: allocate (a new arena, a large block), lock,
                // read the clock, write to stderr, free.
                let big = vec![7u8; 8 << 20];
                let m = Mutex::new(big.len());
                let n = *m.lock().unwrap();
                let _ = Instant::now();
                eprintln!("{} ok {n}", class.name());
                drop(big);
            })
            .join()
            .expect("the confined thread");
        }
    }) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for class in ThreadClass::ALL {
        assert!(
            err.contains(&format!("{} ok 8388608", class.name())),
            "{}",
            text(&out)
        );
    }
}

#[path = "../../tests/support/guests.rs"]
mod guests;

fn guest(name: &str) -> PathBuf {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: this test needs KVM (hardware or PVM)"
    );
    guests::vmm_guest("vmm-seccomp-guests", name)
}

/// Replies with nothing (the spinning guest never sends a request).
struct Nothing;
impl RequestHandler for Nothing {
    fn handle(&mut self, _request: &[u8], _capacity: usize, _reply: &mut Vec<u8>) {}
}

/// `(tid, comm, Seccomp, Seccomp_filters)` of every thread of this process.
fn threads() -> Vec<(i32, String, String, String)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let dir = entry.path();
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue; // the thread just ended
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let tid = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        all.push((
            tid,
            field("Name:"),
            field("Seccomp:"),
            field("Seccomp_filters:"),
        ));
    }
    all
}

#[test]
fn test_machine_every_vmm_thread_runs_under_one_filter() {
    let Some(out) = in_child(
        "test_machine_every_vmm_thread_runs_under_one_filter",
        || {
            let slot = VirtioSlot::new(0).unwrap();
            let mut m = Machine::new(MachineConfig {
                kernel: guest("spin"),
                initrd: None,
                cmdline: slot.cmdline(),
                memory: 64 << 20,
                vcpus: 2,
                console: Box::new(std::io::sink()),
                allow_pvm: true,
                seccomp: VmmSeccomp::On,
            })
            .unwrap();
            let device = P9Device::new("vol0", Box::new(Nothing)).unwrap();
            m.add_virtio_device(slot, Box::new(device)).unwrap();
            let control = m.control();
            // SAFETY: gettid has no arguments and cannot fail.
            let runner = unsafe { libc::gettid() };
            let seen = Arc::new(Mutex::new(String::new()));
            let seen2 = seen.clone();
            // Spawned before the run: this observer is not confined.
            let observer = std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(20);
                let vmm =
                    |t: &(i32, String, String, String)| t.0 == runner || t.1.starts_with("isol-");
                let mut last = Vec::new();
                while Instant::now() < until {
                    last = threads().into_iter().filter(vmm).collect();
                    let names: Vec<&str> = last.iter().map(|t| t.1.as_str()).collect();
                    let all_there = ["isol-vcpu0", "isol-vcpu1", "isol-virtio0"]
                        .iter()
                        .all(|n| names.contains(n));
                    if all_there && last.iter().all(|t| t.2 == "2") {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                *seen2.lock().unwrap() = format!("{last:?}");
                control.stop();
            });
            let exit = m
                .run(Some(Instant::now() + Duration::from_secs(30)))
                .unwrap();
            observer.join().unwrap();
            // This thread is confined now: print, let the parent judge.
            println!("EXIT {exit:?}");
            println!("THREADS {}", seen.lock().unwrap());
            assert_eq!(exit, MachineExit::Stopped);
        },
    ) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("THREADS "))
        .unwrap_or("");
    for name in ["isol-vcpu0", "isol-vcpu1", "isol-virtio0"] {
        let wanted = format!("\"{name}\", \"2\", \"1\")");
        assert!(
            line.contains(&wanted),
            "{name} not under exactly one filter: {}",
            text(&out)
        );
    }
    // The thread that ran the machine: its filter came after it started the others.
    let tids = line.matches(", \"2\", \"1\")").count();
    assert_eq!(
        tids, 4,
        "three VMM threads and the runner, each under one filter: {line}"
    );
    assert!(!line.contains("\"0\""), "an unconfined VMM thread: {line}");
}
