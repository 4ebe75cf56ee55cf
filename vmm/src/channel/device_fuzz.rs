//! Fuzzing the isol channel from the guest side: random port sequences (any offset,
//! width and value; valid registers weighted up), page numbers in, at the edge of and
//! beyond guest memory, SEND/RECV lengths around the buffer size, interleaved with the
//! host's stdin, EOF and signals. Oracles, checked against a model of the protocol:
//! - no panic;
//! - every registered buffer page lies inside guest memory, at most MAX_BUF_PAGES;
//! - stdout and stderr get exactly the bytes the model predicts (byte registers and
//!   SEND from the registered pages), stdin comes out exactly in order;
//! - the outcome is set only by a valid EXIT report written as one 32-bit access, it is
//!   the first one, and nothing is output after it: no other sequence forges an exit.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::super::output::{Output, OutputQueue};
use super::*;
use crate::devices::fuzz::{self, Rng};

/// Guest memory of the fuzzed VM: 64 pages.
const MEM_PAGES: u64 = 64;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a correct channel does, tracked beside the device.
#[derive(Default)]
struct Model {
    pages: Vec<u64>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdin: VecDeque<u8>,
    stdin_seen: Vec<u8>,
    stdin_got: Vec<u8>,
    outcome: Option<u32>,
}

const REGS: [u16; 12] = [
    REG_STDOUT,
    REG_STDERR,
    REG_STDIN_DATA,
    REG_MAGIC_EVENT,
    REG_STDIN_STATUS,
    REG_SIGNAL,
    REG_EXIT,
    REG_BUF_PAGE,
    REG_SEND,
    REG_RECV,
    0x1f,
    0x7,
];

fn width(rng: &mut Rng) -> usize {
    match rng.below(8) {
        0 => 0,
        1 => 2,
        2 => rng.below(PAGE as u64 + 2) as usize,
        3 | 4 => 1,
        _ => 4,
    }
}

fn value(rng: &mut Rng, reg: u16) -> u32 {
    let page_edge = [
        0,
        MEM_PAGES - 1,
        MEM_PAGES,
        MEM_PAGES + 1,
        u64::from(u32::MAX),
    ];
    let send = [
        u64::from(STREAM_STDOUT << 24) | 1,
        u64::from(STREAM_STDERR << 24) | PAGE as u64,
        u64::from(STREAM_STDOUT << 24) | (MAX_BUF_PAGES * PAGE) as u64,
        u64::from(STREAM_STDOUT << 24) | (MAX_BUF_PAGES * PAGE + 1) as u64,
        u64::from(3u32 << 24) | 5,
    ];
    let exits = [
        u64::from(ExitReport::Exited(3).encode()),
        u64::from(ExitReport::Signaled(0).encode()),
        u64::from(ExitReport::Signaled(9).encode()),
        u64::from(ExitReport::ExecFailed(2).encode()),
        0x0500_0000,
        0x0100_0100,
    ];
    match reg {
        REG_BUF_PAGE => rng.u32_near(&page_edge),
        REG_SEND => rng.u32_near(&send),
        REG_EXIT => rng.u32_near(&exits),
        REG_MAGIC_EVENT => rng.pick(&[0, 1, 2, 3, 0xff]),
        _ => rng.next() as u32,
    }
}

struct Case {
    dev: ChannelDevice,
    ch: Arc<Channel>,
    mem: GuestMemoryMmap,
    model: Model,
}

impl Case {
    fn new() -> (Case, Output, Sink, Sink) {
        let ch = Arc::new(Channel::new());
        let (out, err) = (Sink::default(), Sink::default());
        let queue: OutputQueue = ch.output().clone();
        let output = Output::spawn(queue, Box::new(out.clone()), Box::new(err.clone())).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (MEM_PAGES * 4096) as usize)])
            .unwrap();
        let dev = ChannelDevice::new(ch.clone(), MachineControl::new()).with_memory(mem.clone());
        let case = Case {
            dev,
            ch,
            mem,
            model: Model::default(),
        };
        (case, output, out, err)
    }

    fn over(&self) -> bool {
        self.model.outcome.is_some()
    }

    fn guest_write(&mut self, rng: &mut Rng) {
        let reg = if rng.one_in(8) {
            rng.below(64) as u16
        } else {
            rng.pick(&REGS)
        };
        let w = width(rng);
        let v = value(rng, reg);
        let mut data = vec![0u8; w];
        if w == 4 {
            data.copy_from_slice(&v.to_le_bytes());
        } else {
            data.iter_mut().for_each(|b| *b = rng.next() as u8);
            if w >= 1 && reg == REG_MAGIC_EVENT {
                data[0] = v as u8;
            }
        }
        self.predict_write(reg, &data);
        self.dev.write(reg, &data);
    }

    fn predict_write(&mut self, reg: u16, data: &[u8]) {
        if self.over() {
            return;
        }
        let m = &mut self.model;
        let word = (data.len() == 4).then(|| u32::from_le_bytes(data.try_into().unwrap()));
        match (reg, word) {
            (REG_STDOUT, _) => m.stdout.extend_from_slice(data),
            (REG_STDERR, _) => m.stderr.extend_from_slice(data),
            (REG_EXIT, Some(v)) if ExitReport::decode(v).is_some() => m.outcome = Some(v),
            (REG_BUF_PAGE, Some(pfn)) => {
                let gpa = u64::from(pfn) << 12;
                if pfn < MEM_PAGES as u32 && m.pages.len() < MAX_BUF_PAGES {
                    m.pages.push(gpa);
                }
            }
            (REG_SEND, Some(v)) => {
                let (stream, len) = (v >> 24, (v & 0xff_ffff) as usize);
                if len > m.pages.len() * PAGE {
                    return;
                }
                let mut buf = vec![0u8; len];
                for (chunk, gpa) in buf.chunks_mut(PAGE).zip(&m.pages) {
                    self.mem.read_slice(chunk, GuestAddress(*gpa)).unwrap();
                }
                match stream {
                    STREAM_STDOUT => m.stdout.extend_from_slice(&buf),
                    STREAM_STDERR => m.stderr.extend_from_slice(&buf),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn guest_read(&mut self, rng: &mut Rng) {
        let reg = if rng.one_in(8) {
            rng.below(64) as u16
        } else {
            rng.pick(&REGS)
        };
        let mut data = vec![0u8; width(rng)];
        self.dev.read(reg, &mut data);
        match (reg, data.len()) {
            (REG_STDIN_DATA, n) => {
                let got = n.min(self.model.stdin.len());
                let want: Vec<u8> = self.model.stdin.drain(..got).collect();
                assert_eq!(data[..got], want[..], "stdin bytes out of order");
                assert!(data[got..].iter().all(|b| *b == 0), "stdin padding");
                self.model.stdin_got.extend_from_slice(&want);
            }
            (REG_RECV, 4) => {
                let v = u32::from_le_bytes(data[..].try_into().unwrap());
                let expect = self.model.stdin.len().min(self.model.pages.len() * PAGE);
                if v == STDIN_EOF || v == 0 {
                    assert!(
                        expect == 0,
                        "RECV returned {v:#x} with {expect} bytes to give"
                    );
                    return;
                }
                assert_eq!(v as usize, expect, "RECV count");
                let want: Vec<u8> = self.model.stdin.drain(..expect).collect();
                let mut got = vec![0u8; expect];
                for (chunk, gpa) in got.chunks_mut(PAGE).zip(&self.model.pages) {
                    self.mem.read_slice(chunk, GuestAddress(*gpa)).unwrap();
                }
                // Pages may repeat: a later chunk overwrites an earlier one in memory.
                if unique(&self.model.pages) {
                    assert_eq!(got, want, "RECV bytes");
                }
                self.model.stdin_got.extend_from_slice(&want);
            }
            (REG_MAGIC_EVENT, 1) => assert_eq!(data[0], MAGIC),
            _ => {}
        }
    }

    fn host_event(&mut self, rng: &mut Rng) {
        match rng.below(4) {
            0 | 1 => {
                let n = rng.below(3 * PAGE as u64) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                let room = super::super::state::STDIN_BUFFER - self.model.stdin.len();
                let bytes = &bytes[..n.min(room)];
                self.ch.push_stdin(bytes);
                self.model.stdin.extend(bytes);
                self.model.stdin_seen.extend_from_slice(bytes);
            }
            2 => self.ch.set_signal(rng.pick(&[2, 15, 1, 3])),
            _ => {}
        }
    }

    /// Guest memory changes behind the device's back (the guest owns its pages).
    fn scribble(&mut self, rng: &mut Rng) {
        let at = rng.below(MEM_PAGES * 4096 - 64);
        let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
        self.mem.write_slice(&bytes, GuestAddress(at)).unwrap();
    }

    fn check(&self) {
        assert!(self.dev.pages.len() <= MAX_BUF_PAGES);
        for gpa in &self.dev.pages {
            assert!(
                gpa + PAGE as u64 <= MEM_PAGES * 4096,
                "page {gpa:#x} outside memory"
            );
        }
        assert_eq!(self.dev.pages, self.model.pages);
        let outcome = self.ch.outcome();
        assert_eq!(
            outcome,
            self.model.outcome.map(Outcome::Reported),
            "outcome"
        );
    }
}

fn unique(pages: &[u64]) -> bool {
    let mut p = pages.to_vec();
    p.sort_unstable();
    p.windows(2).all(|w| w[0] != w[1])
}

fn one_case(seed: u64) {
    let mut rng = Rng::new(seed);
    let (mut case, output, out, err) = Case::new();
    let steps = 1 + rng.below(200);
    for _ in 0..steps {
        match rng.below(10) {
            0..=3 => case.guest_write(&mut rng),
            4..=6 => case.guest_read(&mut rng),
            7 | 8 => case.host_event(&mut rng),
            _ => case.scribble(&mut rng),
        }
        case.check();
    }
    assert!(output.finish(None, &|| false), "output not drained");
    assert_eq!(*out.0.lock().unwrap(), case.model.stdout, "stdout");
    assert_eq!(*err.0.lock().unwrap(), case.model.stderr, "stderr");
    assert!(case.model.stdin_seen.starts_with(&case.model.stdin_got));
}

#[test]
fn fuzz_channel_port_sequences_and_page_numbers() {
    let report = fuzz::run("channel", one_case);
    assert!(report.cases > 0);
}
