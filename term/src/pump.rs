//! The byte pump between the caller's terminal and a pty master, driven by a poll loop
//! the caller owns (it also waits for the workload, signals and a timeout).
//!
//! The master is set non-blocking (it is isol's own file); the caller's stdin and stdout
//! are left as they are (their file descriptions are shared with the caller's shell, and
//! O_NONBLOCK on them would outlive isol): stdin is read only when poll says it is
//! readable, stdout written only when poll says it is writable. Each direction has a
//! bounded buffer: a side that stops reading holds the other back, as a pipe would.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags};

use crate::TermError;

/// Bytes buffered per direction.
pub const BUF_CAP: usize = 16 * 1024;

/// Which of the pump's fds a [`PollFd`] from [`Pump::interests`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The caller's stdin.
    Stdin,
    /// The caller's stdout.
    Stdout,
    /// The pty master.
    Master,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Pump<'a> {
    stdin: Option<BorrowedFd<'a>>,
    stdout: Option<BorrowedFd<'a>>,
    master: Option<BorrowedFd<'a>>,
    to_master: Vec<u8>,
    to_stdout: Vec<u8>,
}

fn io(what: &'static str) -> impl FnOnce(Errno) -> TermError {
    move |source| TermError::Io { what, source }
}

fn read(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> nix::Result<usize> {
    let mut chunk = [0u8; BUF_CAP];
    let want = max.min(BUF_CAP);
    loop {
        match nix::unistd::read(fd, &mut chunk[..want]) {
            Err(Errno::EINTR) => continue,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes as much of `buf` as the fd takes and removes it from `buf`.
fn write(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> nix::Result<()> {
    loop {
        match nix::unistd::write(fd, buf) {
            Err(Errno::EINTR) => continue,
            Ok(n) => {
                buf.drain(..n);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

impl<'a> Pump<'a> {
    /// A pump between `stdin`/`stdout` (the caller's) and `master`, which it makes
    /// non-blocking. `stdin` is `None` when the caller's input is not forwarded.
    pub fn new(
        stdin: Option<BorrowedFd<'a>>,
        stdout: BorrowedFd<'a>,
        master: BorrowedFd<'a>,
    ) -> Result<Pump<'a>, TermError> {
        let flags = fcntl(master, FcntlArg::F_GETFL).map_err(io("read the pty's flags"))?;
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        fcntl(master, FcntlArg::F_SETFL(flags)).map_err(io("make the pty non-blocking"))?;
        Ok(Pump {
            stdin,
            stdout: Some(stdout),
            master: Some(master),
            to_master: Vec::with_capacity(BUF_CAP),
            to_stdout: Vec::with_capacity(BUF_CAP),
        })
    }

    /// What to poll for now (only fds with something to do).
    pub fn interests(&self) -> Vec<(Slot, PollFd<'a>)> {
        let mut v = Vec::with_capacity(3);
        if let Some(fd) = self.stdin.filter(|_| self.to_master.len() < BUF_CAP) {
            v.push((Slot::Stdin, PollFd::new(fd, PollFlags::POLLIN)));
        }
        if let Some(fd) = self.master {
            let mut f = PollFlags::empty();
            if self.to_stdout.len() < BUF_CAP {
                f |= PollFlags::POLLIN;
            }
            if !self.to_master.is_empty() {
                f |= PollFlags::POLLOUT;
            }
            if !f.is_empty() {
                v.push((Slot::Master, PollFd::new(fd, f)));
            }
        }
        if let Some(fd) = self.stdout.filter(|_| !self.to_stdout.is_empty()) {
            v.push((Slot::Stdout, PollFd::new(fd, PollFlags::POLLOUT)));
        }
        v
    }

    /// Moves bytes for one fd poll reported on.
    pub fn ready(&mut self, slot: Slot, revents: PollFlags) -> Result<(), TermError> {
        if revents.is_empty() {
            return Ok(());
        }
        match slot {
            Slot::Stdin => self.read_stdin(),
            Slot::Master => self.master_ready(revents),
            Slot::Stdout => self.write_stdout(),
        }
    }

    fn read_stdin(&mut self) -> Result<(), TermError> {
        let Some(fd) = self.stdin else { return Ok(()) };
        let room = BUF_CAP - self.to_master.len();
        match read(fd, &mut self.to_master, room) {
            Ok(0) | Err(Errno::EIO) => self.stdin = None,
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(e) => return Err(io("read the caller's terminal")(e)),
        }
        Ok(())
    }

    fn master_ready(&mut self, revents: PollFlags) -> Result<(), TermError> {
        let Some(fd) = self.master else { return Ok(()) };
        if revents.contains(PollFlags::POLLOUT) && !self.to_master.is_empty() {
            match write(fd, &mut self.to_master) {
                Ok(()) | Err(Errno::EAGAIN) => {}
                // The slave side is closed: nobody reads the input any more.
                Err(Errno::EIO) => self.to_master.clear(),
                Err(e) => return Err(io("write to the workload's terminal")(e)),
            }
        }
        if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            let room = BUF_CAP - self.to_stdout.len();
            match read(fd, &mut self.to_stdout, room) {
                Ok(n) if n > 0 => {}
                Err(Errno::EAGAIN) => {}
                // EIO (or 0): every holder of the slave closed it.
                Ok(_) | Err(Errno::EIO) => self.master = None,
                Err(e) => return Err(io("read the workload's terminal")(e)),
            }
            if self.stdout.is_none() {
                self.to_stdout.clear();
            }
        }
        Ok(())
    }

    fn write_stdout(&mut self) -> Result<(), TermError> {
        let Some(fd) = self.stdout else { return Ok(()) };
        match write(fd, &mut self.to_stdout) {
            Ok(()) | Err(Errno::EAGAIN) => {}
            // The caller's terminal is gone: keep draining the workload's output.
            Err(Errno::EIO | Errno::EPIPE) => {
                self.stdout = None;
                self.to_stdout.clear();
            }
            Err(e) => return Err(io("write to the caller's terminal")(e)),
        }
        Ok(())
    }

    /// After the workload has ended: copies what is left in the master to stdout (reads
    /// until the master is empty or closed).
    pub fn finish(&mut self) -> Result<(), TermError> {
        loop {
            self.flush_stdout()?;
            let Some(fd) = self.master else { break };
            match read(fd, &mut self.to_stdout, BUF_CAP) {
                Ok(n) if n > 0 => {}
                Err(Errno::EAGAIN) => break,
                Ok(_) | Err(Errno::EIO) => self.master = None,
                Err(e) => return Err(io("read the workload's terminal")(e)),
            }
        }
        self.flush_stdout()
    }

    fn flush_stdout(&mut self) -> Result<(), TermError> {
        while self.stdout.is_some() && !self.to_stdout.is_empty() {
            self.write_stdout()?;
        }
        if self.stdout.is_none() {
            self.to_stdout.clear();
        }
        Ok(())
    }

    /// False once every holder of the pty's slave has closed it.
    pub fn master_open(&self) -> bool {
        self.master.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, OwnedFd};

    use nix::poll::{poll, PollTimeout};

    use super::*;

    /// One poll round over the pump's interests.
    fn step(p: &mut Pump<'_>) {
        let interests = p.interests();
        let (slots, mut fds): (Vec<Slot>, Vec<PollFd>) = interests.into_iter().unzip();
        poll(&mut fds, PollTimeout::from(1000u16)).unwrap();
        let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap()).collect();
        for (s, r) in slots.into_iter().zip(revents) {
            p.ready(s, r).unwrap();
        }
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match nix::unistd::read(fd, &mut chunk) {
                Ok(0) | Err(Errno::EAGAIN) => return buf,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn test_pump_copies_both_ways_and_drains_after_close() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut raw = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &raw).unwrap();
        let (in_r, in_w) = nix::unistd::pipe().unwrap();
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_NONBLOCK).unwrap();
        let mut p = Pump::new(Some(in_r.as_fd()), out_w.as_fd(), pty.master.as_fd()).unwrap();
        nix::unistd::write(&in_w, b"typed").unwrap();
        step(&mut p); // stdin -> buffer
        step(&mut p); // buffer -> master
        let mut got = [0u8; 5];
        assert_eq!(nix::unistd::read(&pty.slave, &mut got).unwrap(), 5);
        assert_eq!(&got, b"typed");
        nix::unistd::write(&pty.slave, b"shown").unwrap();
        drop(pty.slave);
        p.finish().unwrap();
        assert_eq!(read_all(&out_r), b"shown");
        assert!(!p.master_open());
        drop(in_w);
        step(&mut p);
        assert!(p.interests().is_empty(), "stdin EOF and master closed");
    }
}
