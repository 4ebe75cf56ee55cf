//! The init's side of the isol channel: port I/O with `rep outsb`/`rep insb` after
//! `ioperm`, or (debug mode only, e.g. under plain QEMU) the console.

use std::arch::asm;
use std::io::Write;

use crate::protocol::{
    ExitReport, CHANNEL_BASE, CHANNEL_LEN, MAGIC, MAX_BUF_PAGES, PAGE, REG_BUF_PAGE, REG_EXIT,
    REG_MAGIC_EVENT, REG_RECV, REG_SEND, REG_SIGNAL, REG_STDERR, REG_STDIN_DATA, REG_STDIN_STATUS,
    REG_STDOUT, STDIN_EOF, STREAM_STDERR, STREAM_STDOUT,
};
use crate::sys::{cvt, Ctx, InitError};

/// What the init asks of the host.
pub trait Host {
    /// Sends workload output (`err`: stderr, else stdout).
    fn output(&mut self, err: bool, data: &[u8]);
    /// Fetches the stdin bytes available now into `buf` (replacing its content); returns
    /// false at end of file. An empty `buf` with true means none yet.
    fn recv_stdin(&mut self, buf: &mut Vec<u8>) -> bool;
    /// A pending signal for the workload, or 0.
    fn signal(&mut self) -> u32;
    /// Reports a boot-progress event.
    fn event(&mut self, ev: u8);
    /// Reports how the run ended; the VMM stops the VM.
    fn exit(&mut self, report: ExitReport);
}

/// The real channel (port I/O), with the shared buffer when it could be set up.
#[derive(Debug)]
pub struct PortHost {
    shared: Option<SharedBuf>,
}

/// Pages of the init's memory registered with the host (BUF_PAGE), mlocked so their
/// physical frames stay put.
#[derive(Debug)]
struct SharedBuf {
    ptr: *mut u8,
    len: usize,
}

impl SharedBuf {
    /// Maps, locks and registers [`MAX_BUF_PAGES`] pages.
    fn setup(h: &PortHost) -> std::io::Result<SharedBuf> {
        let len = MAX_BUF_PAGES * PAGE;
        // Compaction must not move locked pages, or the host would read stale frames.
        // (Without CONFIG_COMPACTION the file is absent and nothing moves pages.)
        match std::fs::write("/proc/sys/vm/compact_unevictable_allowed", "0") {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let buf = SharedBuf {
            ptr: ptr.cast(),
            len,
        };
        // SAFETY: the mapping is `len` bytes long.
        cvt(unsafe { libc::mlock(ptr, len) })?;
        // Children must not share it: after a fork, the init's next write would copy the
        // page (copy-on-write) and the host would go on reading the old frame.
        // SAFETY: as above; advice on our own mapping.
        cvt(unsafe { libc::madvise(ptr, len, libc::MADV_DONTFORK) })?;
        let pagemap = std::fs::File::open("/proc/self/pagemap")?;
        let mut pfns = Vec::with_capacity(MAX_BUF_PAGES);
        for i in 0..MAX_BUF_PAGES {
            // SAFETY: the page lies inside the mapping; writing makes it present.
            unsafe { buf.ptr.add(i * PAGE).write_volatile(0) };
            let vpn = (buf.ptr as u64 + (i * PAGE) as u64) / PAGE as u64;
            let mut entry = [0u8; 8];
            std::os::unix::fs::FileExt::read_exact_at(&pagemap, &mut entry, vpn * 8)?;
            let e = u64::from_le_bytes(entry);
            let pfn = e & ((1 << 55) - 1);
            if e >> 63 == 0 || pfn == 0 || pfn > u64::from(u32::MAX) {
                return Err(std::io::Error::other(
                    "no usable frame number in /proc/self/pagemap",
                ));
            }
            pfns.push(pfn);
        }
        for pfn in pfns {
            // pfn fits in 32 bits, checked above.
            #[allow(clippy::cast_possible_truncation)]
            h.outl(REG_BUF_PAGE, pfn as u32);
        }
        Ok(buf)
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live mapping of `len` bytes owned by self, never unmapped.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl PortHost {
    /// SEND through the shared buffer, up to its size per VM exit.
    fn send(&mut self, err: bool, data: &[u8]) {
        let stream = if err { STREAM_STDERR } else { STREAM_STDOUT };
        let Some(buf) = self.shared.as_mut() else {
            return;
        };
        let cap = buf.len;
        for chunk in data.chunks(cap) {
            buf.as_mut()[..chunk.len()].copy_from_slice(chunk);
            // chunk.len() <= 64 KiB < 2^24.
            #[allow(clippy::cast_possible_truncation)]
            let v = (stream << 24) | chunk.len() as u32;
            // The host reads the buffer during this exit; the compiler must not sink the
            // copy past it (the asm is not `nomem`).
            // SAFETY: ioperm granted the channel ports.
            unsafe {
                asm!("out dx, eax", in("eax") v, in("dx") CHANNEL_BASE + REG_SEND, options(nostack, preserves_flags))
            };
        }
    }

    /// Gains access to the ports and checks that the device answers; `Ok(None)` when
    /// nothing answers (no isol channel).
    pub fn open() -> Result<Option<PortHost>, InitError> {
        // SAFETY: ioperm only changes this process's I/O permission bitmap.
        cvt(unsafe { libc::ioperm(CHANNEL_BASE.into(), CHANNEL_LEN.into(), 1) })
            .ctx(|| format!("get access to ports {CHANNEL_BASE:#x}+{CHANNEL_LEN} (ioperm)"))?;
        let mut h = PortHost { shared: None };
        if h.inb(REG_MAGIC_EVENT) != MAGIC {
            return Ok(None);
        }
        match SharedBuf::setup(&h) {
            Ok(b) => h.shared = Some(b),
            Err(e) => {
                eprintln!("isol-init: shared channel buffer unavailable ({e}); using byte I/O")
            }
        }
        Ok(Some(h))
    }

    fn inb(&self, reg: u16) -> u8 {
        let v: u8;
        // SAFETY: ioperm granted the channel ports; `in` touches no memory.
        unsafe {
            asm!("in al, dx", out("al") v, in("dx") CHANNEL_BASE + reg, options(nomem, nostack, preserves_flags))
        };
        v
    }

    fn inl(&self, reg: u16) -> u32 {
        let v: u32;
        // SAFETY: ioperm granted the channel ports; `in` touches no memory.
        unsafe {
            asm!("in eax, dx", out("eax") v, in("dx") CHANNEL_BASE + reg, options(nomem, nostack, preserves_flags))
        };
        v
    }

    fn outb(&self, reg: u16, v: u8) {
        // SAFETY: ioperm granted the channel ports; `out` touches no memory.
        unsafe {
            asm!("out dx, al", in("al") v, in("dx") CHANNEL_BASE + reg, options(nomem, nostack, preserves_flags))
        };
    }

    fn outl(&self, reg: u16, v: u32) {
        // SAFETY: ioperm granted the channel ports; `out` touches no memory.
        unsafe {
            asm!("out dx, eax", in("eax") v, in("dx") CHANNEL_BASE + reg, options(nomem, nostack, preserves_flags))
        };
    }
}

impl Host for PortHost {
    fn output(&mut self, err: bool, data: &[u8]) {
        if self.shared.is_some() {
            return self.send(err, data);
        }
        let port = CHANNEL_BASE + if err { REG_STDERR } else { REG_STDOUT };
        for chunk in data.chunks(PAGE) {
            // SAFETY: ioperm granted the port; rsi/rcx describe `chunk`, which outsb only
            // reads; the direction flag is clear on entry to asm (Rust's asm contract).
            unsafe {
                asm!("rep outsb", in("dx") port, inout("rsi") chunk.as_ptr() => _,
                     inout("rcx") chunk.len() => _, options(nostack, preserves_flags, readonly))
            };
        }
    }

    fn recv_stdin(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        if let Some(buf) = self.shared.as_mut() {
            let n = {
                let v: u32;
                // SAFETY: ioperm granted the channel ports; the host writes the shared buffer.
                unsafe {
                    asm!("in eax, dx", out("eax") v, in("dx") CHANNEL_BASE + REG_RECV, options(nostack, preserves_flags))
                };
                v
            };
            if n == STDIN_EOF {
                return false;
            }
            let n = usize::try_from(n).unwrap_or(0).min(buf.len);
            out.extend_from_slice(&buf.as_mut()[..n]);
            return true;
        }
        let n = self.inl(REG_STDIN_STATUS);
        if n == STDIN_EOF {
            return false;
        }
        out.resize(usize::try_from(n).unwrap_or(0).min(PAGE), 0);
        let port = CHANNEL_BASE + REG_STDIN_DATA;
        // SAFETY: ioperm granted the port; rdi/rcx describe `out`, which insb fills; the
        // direction flag is clear on entry to asm.
        unsafe {
            asm!("rep insb", in("dx") port, inout("rdi") out.as_mut_ptr() => _,
                 inout("rcx") out.len() => _, options(nostack, preserves_flags))
        };
        true
    }

    fn signal(&mut self) -> u32 {
        self.inl(REG_SIGNAL)
    }

    fn event(&mut self, ev: u8) {
        self.outb(REG_MAGIC_EVENT, ev);
    }

    fn exit(&mut self, report: ExitReport) {
        self.outl(REG_EXIT, report.encode());
    }
}

/// Debug stand-in for the channel: output and reports go to the console, stdin is empty.
/// Used only when the config asks for debug mode and no channel answers.
#[derive(Debug)]
pub struct ConsoleHost;

impl Host for ConsoleHost {
    fn output(&mut self, err: bool, data: &[u8]) {
        if err {
            let _ = std::io::stderr().write_all(data);
        } else {
            let _ = std::io::stdout().write_all(data);
            let _ = std::io::stdout().flush();
        }
    }

    fn recv_stdin(&mut self, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        false
    }

    fn signal(&mut self) -> u32 {
        0
    }

    fn event(&mut self, ev: u8) {
        eprintln!("isol-init: event {ev}");
    }

    fn exit(&mut self, report: ExitReport) {
        eprintln!("ISOL-EXIT {report:?} {:#x}", report.encode());
    }
}
