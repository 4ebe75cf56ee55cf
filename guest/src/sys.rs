//! Thin wrappers over the few syscalls std does not offer (mount, chroot, ...),
//! each returning `io::Result`, and the init's error type.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An init step that failed.
#[derive(Debug, thiserror::Error)]
#[error("Cannot {op}")]
pub struct InitError {
    /// What was being done ("mount proc on /proc").
    pub op: String,
    /// Why it failed.
    #[source]
    pub source: io::Error,
}

impl InitError {
    /// The errno to report to the host (0 when the error has none).
    pub fn errno(&self) -> u32 {
        self.source
            .raw_os_error()
            .and_then(|e| u32::try_from(e).ok())
            .unwrap_or(0)
    }
}

/// Adds the failed operation to an `io::Result`.
pub trait Ctx<T> {
    /// Names the operation that failed.
    fn ctx(self, op: impl FnOnce() -> String) -> Result<T, InitError>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, op: impl FnOnce() -> String) -> Result<T, InitError> {
        self.map_err(|source| InitError { op: op(), source })
    }
}

/// Turns a libc return value into `io::Result` (negative means errno).
pub fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Reaps every exited child without blocking; the raw wait status of `target` if it was
/// among them (waitpid without WUNTRACED reports only exits and deaths by signal).
pub fn reap_children(target: libc::pid_t) -> Option<libc::c_int> {
    let mut result = None;
    loop {
        let mut st = 0;
        // SAFETY: `st` is a valid int for waitpid to fill.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid <= 0 {
            return result;
        }
        if pid == target {
            result = Some(st);
        }
    }
}

/// A path as a C string.
pub fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// A string as a C string.
pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// mount(2). `src`/`fstype`/`data` may be empty.
pub fn mount(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (s, t, f, d) = (cstr(src)?, cpath(target)?, cstr(fstype)?, cstr(data)?);
    let opt = |c: &CString, empty: bool| if empty { std::ptr::null() } else { c.as_ptr() };
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null.
    let r = unsafe {
        libc::mount(
            opt(&s, src.is_empty()),
            t.as_ptr(),
            opt(&f, fstype.is_empty()),
            flags,
            opt(&d, data.is_empty()).cast(),
        )
    };
    cvt(r).map(drop)
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// A pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: F_GETFL on a descriptor has no memory effects.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: F_SETFL on a descriptor has no memory effects.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// read(2) into `buf`; Ok(0) at end of file.
pub fn read(fd: libc::c_int, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// write(2) of `buf`; returns bytes written.
pub fn write(fd: libc::c_int, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for `buf.len()` bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Reboots the machine (the VMM sees the reset). PID 1 never returns from here.
pub fn reboot() -> ! {
    // SAFETY: sync and reboot take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        // SAFETY: pause takes no arguments.
        unsafe { libc::pause() };
    }
}
