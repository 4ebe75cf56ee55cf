//! Window sizes: read from the caller's terminal, set on the workload's pty master.

use std::os::fd::{AsFd, AsRawFd};

/// A terminal's size in character cells (and pixels, usually 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Winsize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
    /// Width in pixels.
    pub xpixel: u16,
    /// Height in pixels.
    pub ypixel: u16,
}

/// The size of the terminal on `fd` (TIOCGWINSZ); `None` if it has none.
pub fn winsize(fd: impl AsFd) -> Option<Winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` into the live local `ws`.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some(Winsize {
        rows: ws.ws_row,
        cols: ws.ws_col,
        xpixel: ws.ws_xpixel,
        ypixel: ws.ws_ypixel,
    })
}

/// Sets the size of the terminal on `fd` (TIOCSWINSZ; on a pty master the kernel then
/// sends SIGWINCH to the foreground process group of its slave).
pub fn set_winsize(fd: impl AsFd, w: Winsize) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: w.rows,
        ws_col: w.cols,
        ws_xpixel: w.xpixel,
        ws_ypixel: w.ypixel,
    };
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from the live local `ws`.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    nix::errno::Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_set_then_get_on_a_pty() {
        let p = nix::pty::openpty(None, None).unwrap();
        let w = Winsize {
            rows: 33,
            cols: 111,
            ..Default::default()
        };
        set_winsize(&p.master, w).unwrap();
        assert_eq!(winsize(&p.slave), Some(w));
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(winsize(&r), None);
    }
}
