//! Host threads that serve the channel while the VM runs:
//! - the stdin pump reads isol's fd 0 into the channel's bounded buffer (EOF included);
//! - the signal forwarder takes SIGINT/SIGTERM/SIGHUP/SIGQUIT (blocked by the CLI) from a
//!   signalfd and makes them pending in the SIGNAL register;
//! - the watchdog stops the VM when the workload has not started within the boot timeout,
//!   or when the workload's own timeout (counted from its start) expires.
//!
//! All three poll with a short timeout and return once [`Channel::close`] is called, so a
//! finished run leaves no thread behind.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::state::{Channel, Outcome};
use crate::seccomp::{self, ThreadClass, VmmSeccomp};

/// How often blocked host threads look at [`Channel::is_closed`], in milliseconds.
const POLL_MS: i32 = 100;

/// Signals isol forwards to the workload.
pub const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Waits up to [`POLL_MS`] for `fd` to be readable; Ok(false) on timeout.
fn poll_in(fd: RawFd) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd that lives across the call.
    let r = unsafe { libc::poll(&mut p, 1, POLL_MS) };
    match r {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// Starts the stdin pump on `fd` (isol's fd 0), confined unless `seccomp` is off.
pub fn spawn_stdin_pump(
    channel: Arc<Channel>,
    fd: RawFd,
    seccomp: VmmSeccomp,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("isol-stdin".into())
        .spawn(move || {
            seccomp::confine(ThreadClass::Host, seccomp);
            let mut buf = vec![0u8; 16 << 10];
            while !channel.is_closed() {
                match poll_in(fd) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(_) => break,
                }
                // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // n >= 1 here, so the cast cannot lose anything.
                #[allow(clippy::cast_sign_loss)]
                let n = n.max(0) as usize;
                if n == 0 || !channel.push_stdin(&buf[..n]) {
                    break;
                }
            }
            channel.stdin_eof();
        })
}

/// A signalfd for [`FORWARDED`]. The signals must be blocked (the CLI blocks them).
fn signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigemptyset/sigaddset only write the local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        set
    };
    // SAFETY: `set` is an initialized sigset; -1 asks for a new fd.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Starts the signal forwarder, confined unless `seccomp` is off.
pub fn spawn_signal_forwarder(
    channel: Arc<Channel>,
    seccomp: VmmSeccomp,
) -> io::Result<JoinHandle<()>> {
    let fd = signalfd()?;
    std::thread::Builder::new()
        .name("isol-signals".into())
        .spawn(move || {
            seccomp::confine(ThreadClass::Host, seccomp);
            while !channel.is_closed() {
                match poll_in(fd.as_raw_fd()) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(_) => break,
                }
                // SAFETY: an all-zero signalfd_siginfo is valid plain data.
                let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                let size = std::mem::size_of::<libc::signalfd_siginfo>();
                // SAFETY: `info` is a writable buffer of exactly `size` bytes.
                let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), size) };
                if usize::try_from(n).ok() == Some(size) {
                    channel.set_signal(info.ssi_signo);
                }
            }
        })
}

/// When the watchdog gives up.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// The workload must have started this long after the VM starts.
    pub boot: Duration,
    /// The workload's own timeout, counted from its start.
    pub workload: Option<Duration>,
}

/// Starts the watchdog, confined unless `seccomp` is off; `stop` ends the VM.
pub fn spawn_watchdog(
    channel: Arc<Channel>,
    deadlines: Deadlines,
    stop: Box<dyn Fn() + Send>,
    seccomp: VmmSeccomp,
) -> io::Result<JoinHandle<()>> {
    let boot_deadline = Instant::now() + deadlines.boot;
    std::thread::Builder::new()
        .name("isol-watchdog".into())
        .spawn(move || {
            seccomp::confine(ThreadClass::Host, seccomp);
            watch(&channel, deadlines, boot_deadline, &*stop);
        })
}

fn watch(channel: &Channel, deadlines: Deadlines, boot_deadline: Instant, stop: &dyn Fn()) {
    loop {
        let s = channel.lock();
        if s.closed || s.outcome.is_some() {
            return;
        }
        let now = Instant::now();
        let (until, on_expiry) = match s.started {
            None => (
                Some(boot_deadline),
                Outcome::BootTimedOut { ready: s.ready },
            ),
            Some(t) => (deadlines.workload.map(|w| t + w), Outcome::TimedOut),
        };
        if until.is_some_and(|u| now >= u) {
            drop(s);
            if channel.set_outcome(on_expiry) {
                stop();
            }
            return;
        }
        drop(channel.wait_until(s, until));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn test_watchdog_boot_timeout_stops_vm() {
        let ch = Arc::new(Channel::new());
        let stopped = Arc::new(AtomicBool::new(false));
        let s2 = stopped.clone();
        let d = Deadlines {
            boot: Duration::from_millis(50),
            workload: None,
        };
        let h = spawn_watchdog(
            ch.clone(),
            d,
            Box::new(move || s2.store(true, Ordering::SeqCst)),
            VmmSeccomp::Off,
        )
        .unwrap();
        h.join().unwrap();
        assert!(stopped.load(Ordering::SeqCst));
        assert_eq!(ch.outcome(), Some(Outcome::BootTimedOut { ready: false }));
    }

    #[test]
    fn test_watchdog_workload_timeout_counts_from_start() {
        let ch = Arc::new(Channel::new());
        let d = Deadlines {
            boot: Duration::from_secs(60),
            workload: Some(Duration::from_millis(50)),
        };
        let h = spawn_watchdog(ch.clone(), d, Box::new(|| {}), VmmSeccomp::Off).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            ch.outcome(),
            None,
            "the timeout must not run before the start"
        );
        ch.lock().started = Some(Instant::now());
        ch.notify();
        h.join().unwrap();
        assert_eq!(ch.outcome(), Some(Outcome::TimedOut));
    }

    #[test]
    fn test_watchdog_returns_on_close() {
        let ch = Arc::new(Channel::new());
        let d = Deadlines {
            boot: Duration::from_secs(60),
            workload: None,
        };
        let h = spawn_watchdog(ch.clone(), d, Box::new(|| {}), VmmSeccomp::Off).unwrap();
        ch.close();
        h.join().unwrap();
        assert_eq!(ch.outcome(), None);
    }

    #[test]
    fn test_stdin_pump_reads_to_eof() {
        let ch = Arc::new(Channel::new());
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe returned two fresh fds that we now own.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut wf = std::fs::File::from(w);
        std::io::Write::write_all(&mut wf, b"a\0b").unwrap();
        drop(wf);
        let h = spawn_stdin_pump(ch.clone(), r.as_raw_fd(), VmmSeccomp::Off).unwrap();
        h.join().unwrap();
        let s = ch.lock();
        assert_eq!(s.stdin.iter().copied().collect::<Vec<_>>(), b"a\0b");
        assert!(s.stdin_eof);
    }
}
