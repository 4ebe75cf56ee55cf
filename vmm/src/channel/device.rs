//! The isol channel as a port-I/O device: decodes the registers of
//! [`super::protocol`] and moves bytes between the guest and isol's stdio.
//!
//! Every access is checked against the register's direction and width; anything else
//! (a hostile or buggy guest) is counted and ignored, never a panic. The guest controls
//! only `data.len()`, which the bus already bounds to one page. Output is queued for the
//! writer thread ([`super::output`]), never written to isol's fds from the vCPU: a vCPU
//! waits for a stalled reader only until the machine stops.

use std::sync::Arc;
use std::time::Instant;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::output::Stream;
use super::protocol::{
    ExitReport, EVENT_READY, EVENT_STARTED, MAGIC, MAX_BUF_PAGES, PAGE, REG_BUF_PAGE, REG_EXIT,
    REG_MAGIC_EVENT, REG_RECV, REG_SEND, REG_SIGNAL, REG_STDERR, REG_STDIN_DATA, REG_STDIN_STATUS,
    REG_STDOUT, STDIN_EOF, STREAM_STDERR, STREAM_STDOUT,
};
use super::state::{Channel, Outcome};
use crate::control::MachineControl;
use crate::devices::bus::BusDevice;

/// The channel device on the port bus.
pub struct ChannelDevice {
    channel: Arc<Channel>,
    control: MachineControl,
    /// Guest memory, for the shared-buffer transport (None: byte registers only).
    mem: Option<GuestMemoryMmap>,
    /// Guest-physical addresses of the registered buffer pages, in order.
    pages: Vec<u64>,
}

impl std::fmt::Debug for ChannelDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelDevice")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl ChannelDevice {
    /// A device queueing the guest's stdout/stderr on `channel`'s output; the exit report
    /// stops the machine of `control`.
    pub fn new(channel: Arc<Channel>, control: MachineControl) -> ChannelDevice {
        ChannelDevice {
            channel,
            control,
            mem: None,
            pages: Vec::new(),
        }
    }

    /// Enables the shared-buffer transport (BUF_PAGE/SEND/RECV) on this guest memory.
    pub fn with_memory(mut self, mem: GuestMemoryMmap) -> ChannelDevice {
        self.mem = Some(mem);
        self
    }

    /// A guest `in`/`ins` at `offset` from the channel base.
    pub fn read(&mut self, offset: u16, data: &mut [u8]) {
        match (offset, data.len()) {
            (REG_MAGIC_EVENT, 1) => data[0] = MAGIC,
            (REG_STDIN_STATUS, 4) => data.copy_from_slice(&self.stdin_status().to_le_bytes()),
            (REG_SIGNAL, 4) => {
                let sig = std::mem::take(&mut self.channel.lock().signal);
                data.copy_from_slice(&sig.to_le_bytes());
            }
            (REG_STDIN_DATA, _) => self.read_stdin(data),
            (REG_RECV, 4) => data.copy_from_slice(&self.recv().to_le_bytes()),
            _ => {
                data.fill(0xff);
                self.channel.lock().bad_accesses += 1;
            }
        }
    }

    /// A guest `out`/`outs` at `offset` from the channel base.
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        if self.channel.lock().outcome.is_some() {
            return; // The run is over; late writes are dropped.
        }
        match (offset, data.len()) {
            (REG_STDOUT, _) => self.output(Stream::Stdout, data),
            (REG_STDERR, _) => self.output(Stream::Stderr, data),
            (REG_MAGIC_EVENT, 1) => self.event(data[0]),
            (REG_EXIT, 4) => self.exit(le32(data)),
            (REG_BUF_PAGE, 4) => self.add_page(le32(data)),
            (REG_SEND, 4) => self.send(le32(data)),
            _ => self.channel.lock().bad_accesses += 1,
        }
    }

    /// Queues output; waits while the queue is full, until the machine stops.
    fn output(&self, stream: Stream, data: &[u8]) {
        let control = &self.control;
        self.channel
            .output()
            .push(stream, data, &|| control.is_stopping());
    }

    fn bad(&self) {
        self.channel.lock().bad_accesses += 1;
    }

    fn add_page(&mut self, pfn: u32) {
        let gpa = u64::from(pfn) << 12;
        let fits = self.mem.as_ref().is_some_and(|m| {
            let mut probe = [0u8; 1];
            m.read_slice(&mut probe, GuestAddress(gpa)).is_ok()
                && m.read_slice(&mut probe, GuestAddress(gpa + PAGE as u64 - 1))
                    .is_ok()
        });
        if fits && self.pages.len() < MAX_BUF_PAGES {
            self.pages.push(gpa);
        } else {
            self.bad();
        }
    }

    /// SEND: `stream << 24 | len` bytes from the shared buffer to stdout or stderr.
    fn send(&mut self, v: u32) {
        let (stream, len) = (v >> 24, (v & 0x00ff_ffff) as usize);
        let Some(mem) = self.mem.as_ref() else {
            return self.bad();
        };
        if len > self.pages.len() * PAGE || !(stream == STREAM_STDOUT || stream == STREAM_STDERR) {
            return self.bad();
        }
        let mut buf = vec![0u8; len];
        for (chunk, gpa) in buf.chunks_mut(PAGE).zip(&self.pages) {
            if mem.read_slice(chunk, GuestAddress(*gpa)).is_err() {
                return self.bad();
            }
        }
        let stream = if stream == STREAM_STDOUT {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        self.output(stream, &buf);
    }

    /// RECV: fills the shared buffer with stdin; returns the count, 0 or [`STDIN_EOF`].
    fn recv(&mut self) -> u32 {
        let Some(mem) = self.mem.as_ref() else {
            self.bad();
            return 0;
        };
        let mut s = self.channel.lock();
        if s.stdin.is_empty() {
            return if s.stdin_eof { STDIN_EOF } else { 0 };
        }
        let n = s.stdin.len().min(self.pages.len() * PAGE);
        let bytes: Vec<u8> = s.stdin.drain(..n).collect();
        drop(s);
        self.channel.notify();
        for (chunk, gpa) in bytes.chunks(PAGE).zip(&self.pages) {
            if mem.write_slice(chunk, GuestAddress(*gpa)).is_err() {
                self.bad();
                return 0;
            }
        }
        // n <= MAX_BUF_PAGES * PAGE (64 KiB).
        #[allow(clippy::cast_possible_truncation)]
        let n = n as u32;
        n
    }

    fn stdin_status(&self) -> u32 {
        let s = self.channel.lock();
        if !s.stdin.is_empty() {
            // At most PAGE (4096), so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            return s.stdin.len().min(PAGE) as u32;
        }
        if s.stdin_eof {
            STDIN_EOF
        } else {
            0
        }
    }

    fn read_stdin(&mut self, data: &mut [u8]) {
        let mut s = self.channel.lock();
        let n = data.len().min(s.stdin.len());
        for (dst, src) in data.iter_mut().zip(s.stdin.drain(..n)) {
            *dst = src;
        }
        data[n..].fill(0);
        drop(s);
        // Room for the stdin pump.
        self.channel.notify();
    }

    fn event(&mut self, ev: u8) {
        let mut s = self.channel.lock();
        match ev {
            EVENT_READY => s.ready = true,
            EVENT_STARTED if s.started.is_none() => s.started = Some(Instant::now()),
            _ => s.bad_accesses += 1,
        }
        drop(s);
        self.channel.notify();
    }

    fn exit(&mut self, raw: u32) {
        if ExitReport::decode(raw).is_none() {
            self.channel.lock().bad_accesses += 1;
            return;
        }
        // Output queued before the report is written by the backend before isol exits.
        if self.channel.set_outcome(Outcome::Reported(raw)) {
            self.control.stop();
        }
    }
}

impl BusDevice for ChannelDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The bus gives offsets inside the channel's 32 ports; anything else is bad.
        let offset = u16::try_from(offset).unwrap_or(u16::MAX);
        ChannelDevice::read(self, offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let offset = u16::try_from(offset).unwrap_or(u16::MAX);
        ChannelDevice::write(self, offset, data);
    }
}

fn le32(d: &[u8]) -> u32 {
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> (ChannelDevice, Arc<Channel>, MachineControl) {
        let ch = Arc::new(Channel::new());
        let control = MachineControl::new();
        let dev = ChannelDevice::new(ch.clone(), control.clone());
        (dev, ch, control)
    }

    fn out(ch: &Channel) -> Vec<u8> {
        ch.output().queued(Stream::Stdout)
    }

    fn read_u32(dev: &mut ChannelDevice, off: u16) -> u32 {
        let mut b = [0u8; 4];
        dev.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn test_channel_stdout_stderr_routed_byte_exact() {
        let (mut dev, ch, _) = device();
        dev.write(REG_STDOUT, b"a\0b\n");
        dev.write(REG_STDERR, b"err\r\n");
        dev.write(REG_STDOUT, &[0xff; PAGE]);
        assert_eq!(out(&ch)[..4], *b"a\0b\n");
        assert_eq!(out(&ch).len(), 4 + PAGE);
        assert_eq!(ch.output().queued(Stream::Stderr), b"err\r\n");
    }

    #[test]
    fn test_channel_stalled_output_waits_only_until_the_machine_stops() {
        // No writer at all: the queue fills, as with a reader that never reads.
        let (mut dev, ch, control) = device();
        let page = [b'y'; PAGE];
        while ch.output().pending() + PAGE <= super::super::output::QUEUE_BYTES {
            dev.write(REG_STDOUT, &page);
        }
        let c2 = control.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            c2.stop();
        });
        dev.write(REG_STDOUT, &page); // would block forever before the fix
        t.join().unwrap();
        assert_eq!(ch.output().dropped(), PAGE as u64);
    }

    #[test]
    fn test_channel_magic_reads_constant() {
        let (mut dev, ..) = device();
        let mut b = [0u8; 1];
        dev.read(REG_MAGIC_EVENT, &mut b);
        assert_eq!(b[0], MAGIC);
    }

    #[test]
    fn test_channel_stdin_status_data_then_eof() {
        let (mut dev, ch, ..) = device();
        assert_eq!(read_u32(&mut dev, REG_STDIN_STATUS), 0);
        ch.push_stdin(b"hello");
        assert_eq!(read_u32(&mut dev, REG_STDIN_STATUS), 5);
        let mut buf = [9u8; 3];
        dev.read(REG_STDIN_DATA, &mut buf);
        assert_eq!(&buf, b"hel");
        ch.stdin_eof();
        assert_eq!(read_u32(&mut dev, REG_STDIN_STATUS), 2);
        let mut buf = [9u8; 4];
        dev.read(REG_STDIN_DATA, &mut buf);
        assert_eq!(&buf, b"lo\0\0");
        assert_eq!(read_u32(&mut dev, REG_STDIN_STATUS), STDIN_EOF);
    }

    #[test]
    fn test_channel_stdin_status_caps_at_a_page() {
        let (mut dev, ch, ..) = device();
        ch.push_stdin(&[1u8; 3 * PAGE]);
        assert_eq!(read_u32(&mut dev, REG_STDIN_STATUS), 4096);
    }

    #[test]
    fn test_channel_signal_read_clears() {
        let (mut dev, ch, ..) = device();
        ch.set_signal(15);
        assert_eq!(read_u32(&mut dev, REG_SIGNAL), 15);
        assert_eq!(read_u32(&mut dev, REG_SIGNAL), 0);
    }

    #[test]
    fn test_channel_exit_records_first_and_stops() {
        let (mut dev, ch, control) = device();
        dev.write(REG_EXIT, &ExitReport::Exited(7).encode().to_le_bytes());
        dev.write(REG_EXIT, &ExitReport::Exited(0).encode().to_le_bytes());
        dev.write(REG_STDOUT, b"late");
        let want = ExitReport::Exited(7).encode();
        assert_eq!(ch.outcome(), Some(Outcome::Reported(want)));
        assert_eq!(control.exit(), Some(crate::control::MachineExit::Stopped));
        assert!(out(&ch).is_empty());
    }

    #[test]
    fn test_channel_hostile_accesses_ignored() {
        let (mut dev, ch, control) = device();
        dev.write(REG_EXIT, &[1, 2]); // wrong width
        dev.write(REG_EXIT, &0xdead_beefu32.to_le_bytes()); // bad encoding
        dev.write(0xf, &[0; 4096]); // unknown register
        dev.write(REG_MAGIC_EVENT, &[77]); // unknown event
        let mut big = vec![0u8; 4096];
        dev.read(0x9, &mut big);
        assert!(big.iter().all(|b| *b == 0xff));
        dev.read(REG_STDIN_DATA, &mut big); // nothing buffered: zeros
        assert!(big.iter().all(|b| *b == 0));
        assert_eq!(ch.outcome(), None);
        assert_eq!(control.exit(), None);
        assert_eq!(ch.bad_accesses(), 5);
        assert!(out(&ch).is_empty());
    }

    fn mem_device() -> (ChannelDevice, Arc<Channel>, GuestMemoryMmap) {
        let (dev, ch, _) = device();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        (dev.with_memory(mem.clone()), ch, mem)
    }

    #[test]
    fn test_channel_shared_buffer_send_spans_pages() {
        let (mut dev, ch, mem) = mem_device();
        // Two non-contiguous pages, registered in order.
        dev.write(REG_BUF_PAGE, &5u32.to_le_bytes());
        dev.write(REG_BUF_PAGE, &2u32.to_le_bytes());
        let data: Vec<u8> = (0..PAGE + 10).map(|i| (i % 251) as u8).collect();
        mem.write_slice(&data[..PAGE], GuestAddress(5 << 12))
            .unwrap();
        mem.write_slice(&data[PAGE..], GuestAddress(2 << 12))
            .unwrap();
        let len = u32::try_from(data.len()).unwrap();
        dev.write(REG_SEND, &((STREAM_STDOUT << 24) | len).to_le_bytes());
        assert_eq!(out(&ch), data);
    }

    #[test]
    fn test_channel_shared_buffer_recv_stdin_then_eof() {
        let (mut dev, ch, mem) = mem_device();
        dev.write(REG_BUF_PAGE, &7u32.to_le_bytes());
        assert_eq!(read_u32(&mut dev, REG_RECV), 0);
        ch.push_stdin(b"a\0b");
        ch.stdin_eof();
        assert_eq!(read_u32(&mut dev, REG_RECV), 3);
        let mut got = [0u8; 3];
        mem.read_slice(&mut got, GuestAddress(7 << 12)).unwrap();
        assert_eq!(&got, b"a\0b");
        assert_eq!(read_u32(&mut dev, REG_RECV), STDIN_EOF);
    }

    #[test]
    fn test_channel_shared_buffer_hostile_values_ignored() {
        let (mut dev, ch, _) = mem_device();
        dev.write(REG_BUF_PAGE, &0xffff_ffffu32.to_le_bytes()); // outside guest memory
        dev.write(REG_SEND, &((STREAM_STDOUT << 24) | 10).to_le_bytes()); // no pages
        dev.write(REG_BUF_PAGE, &1u32.to_le_bytes());
        dev.write(REG_SEND, &((STREAM_STDOUT << 24) | 4097).to_le_bytes()); // past the buffer
        dev.write(REG_SEND, &((9u32 << 24) | 1).to_le_bytes()); // unknown stream
        for pfn in 0..40u32 {
            dev.write(REG_BUF_PAGE, &pfn.to_le_bytes()); // more than MAX_BUF_PAGES
        }
        assert!(out(&ch).is_empty());
        assert_eq!(ch.bad_accesses(), 4 + 40 - (MAX_BUF_PAGES as u64 - 1));
        let (mut plain, ..) = device(); // no memory: the shared buffer is refused
        plain.write(REG_BUF_PAGE, &1u32.to_le_bytes());
        assert_eq!(read_u32(&mut plain, REG_RECV), 0);
    }

    #[test]
    fn test_channel_events_set_ready_and_started() {
        let (mut dev, ch, ..) = device();
        dev.write(REG_MAGIC_EVENT, &[EVENT_READY]);
        dev.write(REG_MAGIC_EVENT, &[EVENT_STARTED]);
        assert!(ch.ready());
        assert!(ch.lock().started.is_some());
    }
}

#[cfg(test)]
#[path = "device_fuzz.rs"]
mod fuzz;
