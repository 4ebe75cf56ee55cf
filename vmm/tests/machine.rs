//! Tests of the Machine API the VM backend codes against, with the tiny guests of
//! tests/guests. Each test body runs in a child process (this test binary re-executed with
//! `ISOL_VMM_TEST_CHILD=1`), so VMs, threads and fds never outlive it. They run on any
//! /dev/kvm, PVM included (tiny guests, `allow_pvm`), and fail loudly without one.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isol_vmm::devices::virtio::{P9Device, RequestHandler, VirtioSlot};
use isol_vmm::devices::BusDevice;
use isol_vmm::{Machine, MachineConfig, MachineControl, MachineError, MachineExit, VmmSeccomp};

const HELLO: &[u8] = b"Hello from isol tiny guest\n";

#[path = "../../tests/support/gate.rs"]
mod gate;

/// Runs `body` in a child process (this binary re-run with `--exact NAME`); the parent
/// asserts the child passed AND ran the body: the child writes NAME to the file named by
/// `ISOL_VMM_TEST_CHILD` after the body returns, so a mistyped name, which libtest answers
/// with "0 passed" and success, fails here.
fn in_child(name: &str, body: fn()) {
    if let Some(done) = std::env::var_os("ISOL_VMM_TEST_CHILD") {
        body();
        std::fs::write(done, name).expect("write the child's done file");
        return;
    }
    if gate::skip_privileged(name) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let done = dir.path().join("done");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("ISOL_VMM_TEST_CHILD", &done)
        .output()
        .expect("re-run the test binary");
    assert!(
        out.status.success(),
        "child test {name} failed: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&done).ok().as_deref(),
        Some(name),
        "child test {name} did not run its body (no such test?):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[path = "../../tests/support/guests.rs"]
mod guests;

fn guest(name: &str) -> PathBuf {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: these tests need KVM (hardware or PVM)"
    );
    guests::vmm_guest("vmm-machine-guests", name)
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("sink lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn config(kernel: &str, console: Sink) -> MachineConfig {
    MachineConfig {
        kernel: guest(kernel),
        initrd: None,
        cmdline: String::new(),
        memory: 64 << 20,
        vcpus: 2,
        console: Box::new(console),
        allow_pvm: true,
        // The VMM's threads run confined; the test thread stays free to run more machines.
        seccomp: VmmSeccomp::SpawnedThreadsOnly,
    }
}

/// Records what the guest writes and stops the machine (a guest's exit-status port).
struct StatusPort {
    seen: Arc<Mutex<Vec<u8>>>,
    control: MachineControl,
}
impl BusDevice for StatusPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        self.seen
            .lock()
            .expect("status lock")
            .extend_from_slice(data);
        self.control.stop();
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

#[test]
fn test_machine_device_stops_machine() {
    in_child("test_machine_device_stops_machine", || {
        let mut m = Machine::new(config("status", Sink::default())).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let dev = StatusPort {
            seen: seen.clone(),
            control: m.control(),
        };
        m.add_pio_device(0x600, 4, Arc::new(Mutex::new(dev)))
            .unwrap();
        let exit = m
            .run(Some(Instant::now() + Duration::from_secs(20)))
            .unwrap();
        assert_eq!(exit, MachineExit::Stopped);
        assert_eq!(*seen.lock().unwrap(), vec![42]);
    });
}

#[test]
fn test_machine_add_pio_device_overlap_rejected() {
    in_child("test_machine_add_pio_device_overlap_rejected", || {
        let mut m = Machine::new(config("hello-pvh", Sink::default())).unwrap();
        let dev = || -> Arc<Mutex<dyn BusDevice>> {
            Arc::new(Mutex::new(StatusPort {
                seen: Default::default(),
                control: MachineControl::new(),
            }))
        };
        let err = m.add_pio_device(0x3fc, 8, dev()).unwrap_err();
        assert!(matches!(err, MachineError::Bus(_)), "{err:?}");
        assert!(
            m.add_pio_device(0x64, 1, dev()).is_err(),
            "i8042 command port is taken"
        );
        m.add_pio_device(0x600, 4, dev()).unwrap();
        assert!(m.add_pio_device(0x603, 1, dev()).is_err());
    });
}

#[test]
fn test_machine_console_gets_serial_and_reset_ends_run() {
    in_child(
        "test_machine_console_gets_serial_and_reset_ends_run",
        || {
            let console = Sink::default();
            let m = Machine::new(config("hello-pvh", console.clone())).unwrap();
            let exit = m
                .run(Some(Instant::now() + Duration::from_secs(20)))
                .unwrap();
            assert_eq!(exit, MachineExit::Reset);
            let text = console.0.lock().unwrap().clone();
            assert!(
                text.starts_with(HELLO),
                "{}",
                String::from_utf8_lossy(&text)
            );
        },
    );
}

#[test]
fn test_machine_stop_from_another_thread_ends_spinning_and_halted_guests() {
    in_child(
        "test_machine_stop_from_another_thread_ends_spinning_and_halted_guests",
        || {
            for kernel in ["spin", "halt"] {
                let m = Machine::new(config(kernel, Sink::default())).unwrap();
                let control = m.control();
                let stopper = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(200));
                    control.stop();
                });
                // The 30 s deadline is the watchdog: a stop that does not work ends the
                // run with DeadlineExpired instead.
                let exit = m
                    .run(Some(Instant::now() + Duration::from_secs(30)))
                    .unwrap();
                stopper.join().unwrap();
                assert_eq!(
                    exit,
                    MachineExit::Stopped,
                    "{kernel}: stop() did not end the run"
                );
            }
        },
    );
}

#[test]
fn test_machine_run_frees_every_fd() {
    in_child("test_machine_run_frees_every_fd", || {
        let before = open_fds();
        for _ in 0..5 {
            let m = Machine::new(config("hello-pvh", Sink::default())).unwrap();
            assert_eq!(m.run(None).unwrap(), MachineExit::Reset);
        }
        let _ = Machine::new(config("hello-pvh", Sink::default())).unwrap(); // dropped unrun
        assert_eq!(open_fds(), before);
    });
}

/// Replies with the request reversed (a stand-in for the 9P server).
struct Reverse;
impl RequestHandler for Reverse {
    fn handle(&mut self, request: &[u8], _capacity: usize, reply: &mut Vec<u8>) {
        reply.extend(request.iter().rev());
    }
}

fn p9(tag: &str) -> Box<P9Device> {
    Box::new(P9Device::new(tag, Box::new(Reverse)).expect("a valid tag"))
}

#[test]
fn test_machine_virtio_guest_drives_the_9p_device() {
    in_child("test_machine_virtio_guest_drives_the_9p_device", || {
        let before = open_fds();
        let console = Sink::default();
        let slot = VirtioSlot::new(0).unwrap();
        let mut cfg = config("virtio", console.clone());
        cfg.cmdline = format!("console=ttyS0 {}", slot.cmdline());
        let mut m = Machine::new(cfg).unwrap();
        m.add_virtio_device(slot, p9("vol0")).unwrap();
        let exit = m
            .run(Some(Instant::now() + Duration::from_secs(20)))
            .unwrap();
        let text = String::from_utf8_lossy(&console.0.lock().unwrap()).into_owned();
        assert_eq!(exit, MachineExit::Reset, "{text}");
        assert!(
            text.starts_with("virt tag=vol0 reply=tseug morf gnip\n"),
            "{text}"
        );
        assert!(
            !text.contains("no ioeventfd"),
            "served by the worker thread, not inline: {text}"
        );
        assert_eq!(
            open_fds(),
            before,
            "the irqfd, ioeventfd and worker stop eventfds are freed with the machine"
        );
    });
}

#[test]
fn test_machine_add_virtio_device_checks_cmdline_and_slot() {
    in_child(
        "test_machine_add_virtio_device_checks_cmdline_and_slot",
        || {
            let (s0, s1) = (VirtioSlot::new(0).unwrap(), VirtioSlot::new(1).unwrap());
            let mut cfg = config("hello-pvh", Sink::default());
            cfg.cmdline = format!("{} quiet", s0.cmdline());
            let mut m = Machine::new(cfg).unwrap();
            let err = m.add_virtio_device(s1, p9("a")).unwrap_err();
            assert!(
                matches!(err, MachineError::VirtioCmdline { slot: 1, .. }),
                "{err:?}"
            );
            m.add_virtio_device(s0, p9("a")).unwrap();
            let err = m.add_virtio_device(s0, p9("b")).unwrap_err();
            assert!(matches!(err, MachineError::MmioBus(_)), "{err:?}");
            // A prefix of the entry is not the entry.
            let mut cfg = config("hello-pvh", Sink::default());
            cfg.cmdline = s0.cmdline()[..s0.cmdline().len() - 1].to_string();
            let mut m = Machine::new(cfg).unwrap();
            assert!(m.add_virtio_device(s0, p9("a")).is_err());
        },
    );
}
