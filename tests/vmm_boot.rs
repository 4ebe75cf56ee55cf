//! Black-box tests of `isol boot`, the bare VMM, with the tiny guests of
//! vmm/tests/guests (assembled here with binutils' `as`/`ld` by vmm/tests/guests/build.sh).
//!
//! They run for real on any /dev/kvm, PVM included (tiny guests are not Linux kernels, so
//! they pass `--allow-pvm`), and fail loudly when /dev/kvm or binutils is missing. One test
//! boots the default guest kernel (kernels/build.sh) with a busybox initrd through both boot
//! paths: directly on hardware KVM, through the nested lab (tests/lab/run.sh) on PVM.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{assert_code, kvm_kind, run_raw, skip_privileged, stderr, stdout, KvmKind};

const HELLO: &str = "Hello from isol tiny guest\n";

/// The VMM's debug-log line limit (vmm/src/devices/log.rs).
const LOG_LINE_LIMIT: usize = isol_vmm::devices::log::LOG_LINE_LIMIT as usize;

fn guest(name: &str) -> String {
    let path = support::guests::vmm_guest("vmm-guests", name);
    path.to_string_lossy().into_owned()
}

/// Runs `isol boot --allow-pvm --kernel GUEST ARGS...` with the debug log in a file;
/// returns the output and the log.
fn boot(name: &str, args: &[&str]) -> (Output, String) {
    let _ = kvm_kind(); // fails the test when /dev/kvm is missing
    let log = tempfile::NamedTempFile::new().expect("temp log file");
    let kernel = guest(name);
    let mut full = vec!["boot", "--allow-pvm", "--kernel", &kernel];
    full.extend_from_slice(args);
    let out = support::run_with_stdin(
        Command::new(support::isol_bin())
            .args(&full)
            .env("ISOL_VMM_LOG", log.path()),
        b"",
    );
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    (out, text)
}

#[test]
fn test_boot_hello_pvh_prints_line_and_resets() {
    if skip_privileged("test_boot_hello_pvh_prints_line_and_resets") {
        return;
    }
    let (out, log) = boot("hello-pvh", &["--timeout", "20"]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        HELLO,
        "stdout must be exactly the guest's serial bytes"
    );
    assert!(log.contains("VM ended: Reset"), "log: {log}");
}

#[test]
fn test_boot_hello_raw_real_mode_prints_line_and_resets() {
    if skip_privileged("test_boot_hello_raw_real_mode_prints_line_and_resets") {
        return;
    }
    let (out, log) = boot("hello-raw.bin", &["--timeout", "20"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), HELLO);
    assert!(log.contains("VM ended: Reset"), "log: {log}");
}

#[test]
fn test_boot_pvm_host_refuses_ordinary_kernel_without_allow_pvm() {
    if skip_privileged("test_boot_pvm_host_refuses_ordinary_kernel_without_allow_pvm") {
        return;
    }
    let kernel = guest("hello-pvh");
    // No clock: a refusal that first tried to boot would end at --timeout with 124, or in
    // an emulation failure, and fail the checks below.
    let out = run_raw(&["boot", "--kernel", &kernel, "--timeout", "20"], b"");
    match kvm_kind() {
        KvmKind::Pvm => {
            assert_code(&out, 125);
            let err = stderr(&out);
            for needle in [
                "PVM",
                "without hardware virtualization",
                "internal error",
                "--kernel",
                "VT-x/AMD-V",
                "tests/lab/run.sh",
            ] {
                assert!(err.contains(needle), "{needle:?} missing from: {err}");
            }
            assert!(!err.contains("rip="), "no register dump at the user: {err}");
            assert!(stdout(&out).is_empty());
        }
        KvmKind::Hardware => {
            assert_code(&out, 0);
            assert_eq!(stdout(&out), HELLO);
        }
    }
}

#[test]
fn test_boot_unknown_ports_read_all_ones_and_are_logged() {
    if skip_privileged("test_boot_unknown_ports_read_all_ones_and_are_logged") {
        return;
    }
    let (out, log) = boot("ports", &["--timeout", "20"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "ports ok\n");
    assert!(log.contains("unknown port in 0x1234"), "log: {log}");
    assert!(
        !log.contains("port in 0xcfc"),
        "PCI config ports are quiet: {log}"
    );
    // Every access to a port no device owns is logged once, by direction and size (6 per
    // port here: fewer than the log's line limit, which log.rs's own tests cover).
    for port in ["0x0", "0x1", "0x1234", "0x5555", "0x4000", "0xfff0"] {
        for dir in ["in", "out"] {
            for size in [1, 2, 4] {
                let line = format!("[isol-vmm] unknown port {dir} {port} ({size} bytes)");
                assert_eq!(
                    log.lines().filter(|l| *l == line).count(),
                    1,
                    "{line}: {log}"
                );
            }
        }
    }
    let logged = log.lines().filter(|l| l.starts_with("[isol-vmm] ")).count();
    assert!(logged < LOG_LINE_LIMIT, "log: {log}");
    assert!(!log.contains("log limit reached"), "log: {log}");
}

#[test]
fn test_boot_string_io_big_counts_survives() {
    if skip_privileged("test_boot_string_io_big_counts_survives") {
        return;
    }
    let (out, log) = boot("strio", &["--timeout", "60"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "strio ok\n", "log: {log}");
}

#[test]
fn test_boot_mmio_outside_ram_ignored_reads_all_ones() {
    if skip_privileged("test_boot_mmio_outside_ram_ignored_reads_all_ones") {
        return;
    }
    let (out, log) = boot("mmio", &["--timeout", "20"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "mmio ok\n");
    assert!(
        log.contains("unhandled MMIO write 0xd0000000"),
        "log: {log}"
    );
}

#[test]
fn test_boot_spinning_guest_timeout_exits_124() {
    if skip_privileged("test_boot_spinning_guest_timeout_exits_124") {
        return;
    }
    let (out, log) = boot("spin", &["--timeout", "1", "--cpus", "2"]);
    assert_code(&out, 124);
    assert_eq!(stdout(&out), "spinning\n");
    assert!(log.contains("VM ended: DeadlineExpired"), "log: {log}");
}

#[test]
fn test_boot_halted_guest_timeout_exits_124() {
    if skip_privileged("test_boot_halted_guest_timeout_exits_124") {
        return;
    }
    let (out, log) = boot("halt", &["--timeout", "1"]);
    assert_code(&out, 124);
    assert_eq!(stdout(&out), "halted\n");
    assert!(log.contains("VM ended: DeadlineExpired"), "log: {log}");
}

#[test]
fn test_boot_sigterm_stops_spinning_guest_with_143() {
    if skip_privileged("test_boot_sigterm_stops_spinning_guest_with_143") {
        return;
    }
    let _ = kvm_kind();
    let kernel = guest("spin");
    let mut child = Command::new(support::isol_bin())
        .args([
            "boot",
            "--allow-pvm",
            "--kernel",
            &kernel,
            "--cpus",
            "2",
            "--timeout",
            "30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol");
    // Readiness handshake: the guest runs once it printed its line; signal it then.
    let mut serial = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut serial, &mut line).expect("read the guest's line");
    assert_eq!(line, "spinning\n", "the guest did not start");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    // Watchdog only (the --timeout 30 would end it with 124): the status is the check.
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("watchdog: isol boot still ran 120 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
}

#[test]
fn test_boot_triple_fault_ends_vm_with_zero() {
    if skip_privileged("test_boot_triple_fault_ends_vm_with_zero") {
        return;
    }
    let (out, log) = boot("triple", &["--timeout", "20"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "faulting\n");
    assert!(log.contains("VM ended: TripleFault"), "log: {log}");
}

#[test]
fn test_boot_many_vcpus_and_large_memory() {
    if skip_privileged("test_boot_many_vcpus_and_large_memory") {
        return;
    }
    let (out, _) = boot(
        "hello-pvh",
        &["--cpus", "8", "--memory", "6G", "--timeout", "20"],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), HELLO);
    let (out, _) = boot("hello-pvh", &["--cpus", "33"]);
    assert_code(&out, 125);
    assert!(stderr(&out).contains("use 1 to 32"), "{}", stderr(&out));
}

#[test]
fn test_boot_rejects_file_that_is_not_a_kernel() {
    if skip_privileged("test_boot_rejects_file_that_is_not_a_kernel") {
        return;
    }
    let _ = kvm_kind();
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("notakernel");
    std::fs::write(&f, b"#!/bin/sh\necho hi\n").expect("write");
    let out = run_raw(
        &["boot", "--allow-pvm", "--kernel", &f.to_string_lossy()],
        b"",
    );
    assert_code(&out, 125);
    assert!(
        stderr(&out).contains("not a kernel image"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn test_boot_rejects_too_long_cmdline() {
    if skip_privileged("test_boot_rejects_too_long_cmdline") {
        return;
    }
    let long = "x".repeat(3000);
    let (out, _) = boot("hello-pvh", &["--cmdline", &long]);
    assert_code(&out, 125);
    assert!(stderr(&out).contains("at most 2047"), "{}", stderr(&out));
}

/// The default guest kernel's directory (vmlinux and bzImage), or a loud failure.
fn kernel_dir() -> PathBuf {
    let dir = isol_common::paths::cache_dir().join("kernels/default");
    assert!(
        dir.join("vmlinux").is_file() && dir.join("bzImage").is_file(),
        "{} has no vmlinux/bzImage: build the guest kernel with kernels/build.sh (see README)",
        dir.display()
    );
    dir
}

/// A gzip'd newc initramfs whose /init (static busybox) prints the CPU count and reboots.
fn busybox_initrd(dir: &std::path::Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("proc")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (static) is needed: apt-get install busybox-static");
    let init = "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n\
                echo INITRD_OK cpus=$(/bin/busybox grep -c ^processor /proc/cpuinfo)\n\
                /bin/busybox reboot -f\n";
    std::fs::write(root.join("init"), init).expect("write init");
    let out = dir.join("initrd.cpio.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "chmod +x init && find . | cpio -o -H newc 2>/dev/null | gzip > {}",
            out.display()
        ))
        .current_dir(&root)
        .status()
        .expect("sh");
    assert!(
        st.success(),
        "cannot pack the initramfs (needs cpio and gzip)"
    );
    out
}

/// Real Linux through both boot paths (PVH vmlinux, 64-bit bzImage) with an initrd and 2
/// vCPUs: directly on hardware KVM, inside the nested lab on a PVM host (slow: minutes).
#[test]
fn test_boot_real_linux_pvh_and_bzimage_with_initrd() {
    if skip_privileged("test_boot_real_linux_pvh_and_bzimage_with_initrd") {
        return;
    }
    support::require_root();
    let kernels = kernel_dir();
    // Under /tmp: the lab shares it with the L1 read-write.
    let tmp = tempfile::Builder::new()
        .prefix("isol-vmm-linux")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let initrd = busybox_initrd(tmp.path());
    let isol = support::isol_bin();
    let mut script = String::from("set -e\n");
    for image in ["vmlinux", "bzImage"] {
        script.push_str(&format!(
            "{} boot --kernel {} --initrd {} --cpus 2 --memory 256M --timeout 240 \
             --cmdline 'console=ttyS0 quiet reboot=k panic=-1 rdinit=/init'\n",
            isol.display(),
            kernels.join(image).display(),
            initrd.display()
        ));
    }
    let mut cmd = if kvm_kind() == KvmKind::Pvm && !support::in_lab() {
        support::lab_command()
    } else {
        Command::new("env")
    };
    let out = cmd
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    assert_code(&out, 0);
    let text = stdout(&out);
    assert_eq!(
        text.matches("INITRD_OK cpus=2").count(),
        2,
        "stdout:\n{text}"
    );
}
