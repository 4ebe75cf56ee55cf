//! `isol run -t` in container mode: the workload's pty comes from the container's OWN
//! devpts instance (the view mounts a `newinstance` devpts on /dev/pts), never from the
//! host's.
//!
//! The init opens `/dev/pts/ptmx` after pivot_root, inside the container's mount
//! namespace, unlocks it and opens the slave through the master (TIOCGPTPEER: no path
//! lookup of `/dev/pts/N`), hands the slave to the workload as its stdin, stdout,
//! stderr (and, through isol-sandbox's workload steps, its controlling terminal in its
//! own session), and passes the master back to isol over a socketpair (SCM_RIGHTS)
//! before any workload code runs. isol only reads, writes and resizes the master.
//!
//! Why not a host pty (openpty on the host, slave passed in, as some runtimes do): its
//! slave would be an inode of the host's devpts, so the workload's `/proc/self/fd/0`
//! would name a host terminal the container cannot see, `ttyname` would fail, the pty
//! would count against the host's devpts limit, and the workload's one terminal would
//! live outside the namespace that the device allow-list (major 136 of its own devpts)
//! describes. With the container's devpts, everything the workload can reach of its
//! terminal is inside its own view, and isol's side is one master fd.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::stat::Mode;

/// Where the container's own ptmx is (its devpts is mounted there before this runs).
pub const PTMX: &str = "/dev/pts/ptmx";

/// The socketpair the master travels over: (isol's end, the init's end).
pub fn channel() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Opens a new pty in the container's devpts: (master, slave). Runs in the init.
pub fn open_pty(uid: u32, gid: u32) -> Result<(OwnedFd, OwnedFd), (&'static str, Errno)> {
    let master = open(
        PTMX,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ("open the container's /dev/pts/ptmx", e))?;
    verify_ptmx(&master).map_err(|e| ("check the container's /dev/pts/ptmx", e))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the live local `unlock`.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    Errno::result(rc).map_err(|e| ("unlock the pty (TIOCSPTLCK)", e))?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags as an integer and returns a new fd.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    let fd = Errno::result(rc).map_err(|e| ("open the pty's slave (TIOCGPTPEER)", e))?;
    // SAFETY: TIOCGPTPEER just returned this fd; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    // The workload's user owns its terminal (runc does the same for its console).
    nix::unistd::fchown(&slave, Some(uid.into()), Some(gid.into()))
        .map_err(|e| ("give the pty to the workload's user", e))?;
    Ok((master, slave))
}

/// The devpts superblock magic (linux/magic.h).
const DEVPTS_SUPER_MAGIC: libc::c_long = 0x1cd1;

/// Fails (ENOTTY) unless `fd` is a devpts instance's ptmx (char 5:2 on a devpts): checked
/// on the open file itself, so whatever the path named when it was opened, isol only
/// ever unlocks and hands on a real pty master. `isol exec -t` opens the ptmx of a
/// container whose workload has run for a while; the workload cannot mount over its
/// devpts (no CAP_SYS_ADMIN), and this makes that a property of the fd, not of the path.
fn verify_ptmx(fd: &OwnedFd) -> Result<(), Errno> {
    let st = nix::sys::stat::fstat(fd)?;
    let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    // SAFETY: fstatfs writes one statfs into the zeroed local `fs`; the fd is valid.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut fs) };
    Errno::result(rc)?;
    if is_chr && (major, minor) == (5, 2) && fs.f_type as libc::c_long == DEVPTS_SUPER_MAGIC {
        Ok(())
    } else {
        Err(Errno::ENOTTY)
    }
}

/// Sends `master` to isol. Runs in the init.
pub fn send_master(sock: &OwnedFd, master: &OwnedFd) -> nix::Result<()> {
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"m")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map(drop)
}

/// Receives the master from the init; `None` when the init closed its end without
/// sending one (its setup failed: its report says why).
pub fn recv_master(sock: &OwnedFd) -> nix::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            r => break r?,
        }
    };
    let mut got = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS installed this fd in our table; nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                got.get_or_insert(fd);
            }
        }
    }
    match got {
        Some(fd) if nix::unistd::isatty(fd.as_fd()).unwrap_or(false) => Ok(Some(fd)),
        Some(_) => Err(Errno::ENOTTY),
        None => Ok(None),
    }
}

/// The slave as the workload's fds 0, 1 and 2. Runs in the workload process.
pub fn slave_as_stdio(slave: &OwnedFd) -> nix::Result<()> {
    nix::unistd::dup2_stdin(slave)?;
    nix::unistd::dup2_stdout(slave)?;
    nix::unistd::dup2_stderr(slave)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_master_travels_over_the_channel() {
        let (isol, init) = channel().unwrap();
        let p = nix::pty::openpty(None, None).unwrap();
        send_master(&init, &p.master).unwrap();
        let got = recv_master(&isol).unwrap().expect("a master");
        // A line: the slave is in canonical mode.
        nix::unistd::write(&got, b"x\n").unwrap();
        let mut b = [0u8; 8];
        assert_eq!(nix::unistd::read(&p.slave, &mut b).unwrap(), 2);
    }

    #[test]
    fn test_only_a_devpts_ptmx_passes_the_check() {
        // The host's devpts ptmx (mode 000 here: root opens it); not root: not checked.
        let ptmx = open(
            "/dev/pts/ptmx",
            OFlag::O_RDWR | OFlag::O_NOCTTY,
            Mode::empty(),
        );
        match ptmx {
            Ok(m) => assert_eq!(verify_ptmx(&m), Ok(())),
            Err(e) => assert!(!nix::unistd::geteuid().is_root(), "open ptmx as root: {e}"),
        }
        // /dev/ptmx is a pty master too, but not on a devpts: refused like any other file.
        let other = open("/dev/ptmx", OFlag::O_RDWR | OFlag::O_NOCTTY, Mode::empty()).unwrap();
        assert_eq!(verify_ptmx(&other), Err(Errno::ENOTTY));
        let null = open("/dev/null", OFlag::O_RDWR, Mode::empty()).unwrap();
        assert_eq!(verify_ptmx(&null), Err(Errno::ENOTTY));
        let p = nix::pty::openpty(None, None).unwrap();
        assert_eq!(verify_ptmx(&p.slave), Err(Errno::ENOTTY));
    }

    #[test]
    fn test_closed_channel_means_no_master_and_non_tty_is_refused() {
        let (isol, init) = channel().unwrap();
        drop(init);
        assert!(recv_master(&isol).unwrap().is_none());
        let (isol, init) = channel().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        send_master(&init, &r).unwrap();
        assert_eq!(recv_master(&isol).unwrap_err(), Errno::ENOTTY);
    }
}
