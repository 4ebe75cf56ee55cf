//! isol <-> jailed VMM: two pipes carrying length-prefixed [`Message`]s. The VMM says
//! [`Message::Ready`] (or an error) once the machine is set up, waits for isol's go, runs
//! the VM and reports how it ended.

use std::fs::File;
use std::io::{self, Read, Write};

use isol_common::exit::ExecFailure;
use isol_common::WorkloadExit;

/// Longest message accepted (an error with a console tail fits many times over).
const MAX_MESSAGE: usize = 1 << 20;

/// What the VMM tells isol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The machine is set up and the jail complete; waiting for go.
    Ready,
    /// The workload ended so.
    Exit(WorkloadExit),
    /// `isol boot`'s exit code.
    Code(i32),
    /// The run failed; the error and its causes as isol prints them.
    Error(String),
}

fn i32_at(b: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

impl Message {
    /// The wire form (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let text = |tag: u8, head: &[u8], s: &str| [&[tag], head, s.as_bytes()].concat();
        match self {
            Message::Ready => vec![b'R'],
            Message::Exit(WorkloadExit::Exited(c)) => vec![b'X', *c],
            Message::Exit(WorkloadExit::Signaled(s)) => text(b'S', &s.to_le_bytes(), ""),
            Message::Exit(WorkloadExit::TimedOut) => vec![b'T'],
            Message::Exit(WorkloadExit::ExecFailed { failure, command }) => match failure {
                ExecFailure::NotFound => text(b'N', &[], command),
                ExecFailure::NotExecutable(e) => text(b'E', &e.to_le_bytes(), command),
            },
            Message::Code(c) => text(b'C', &c.to_le_bytes(), ""),
            Message::Error(s) => text(b'F', &[], s),
        }
    }

    /// Parses [`Message::encode`]'s output.
    pub fn decode(b: &[u8]) -> Option<Message> {
        let (&tag, rest) = b.split_first()?;
        let string = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Some(match tag {
            b'R' if rest.is_empty() => Message::Ready,
            b'X' if rest.len() == 1 => Message::Exit(WorkloadExit::Exited(rest[0])),
            b'S' if rest.len() == 4 => Message::Exit(WorkloadExit::Signaled(i32_at(rest)?)),
            b'T' if rest.is_empty() => Message::Exit(WorkloadExit::TimedOut),
            b'N' => Message::Exit(WorkloadExit::ExecFailed {
                failure: ExecFailure::NotFound,
                command: string(rest),
            }),
            b'E' => Message::Exit(WorkloadExit::ExecFailed {
                failure: ExecFailure::NotExecutable(i32_at(rest)?),
                command: string(&rest[4..]),
            }),
            b'C' if rest.len() == 4 => Message::Code(i32_at(rest)?),
            b'F' => Message::Error(string(rest)),
            _ => return None,
        })
    }
}

/// Writes one message.
pub fn send(w: &mut impl Write, m: &Message) -> io::Result<()> {
    let body = m.encode();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    w.write_all(&[&len.to_le_bytes()[..], &body].concat())
}

/// Reads one message; `None` at end of stream (the other side is gone).
pub fn receive(r: &mut impl Read) -> io::Result<Option<Message>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        r => r?,
    }
    let len = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too long",
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Message::decode(&body)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown message"))
}

/// The VMM's end: reports to isol and waits for its go.
#[derive(Debug)]
pub struct ChildLink {
    pub(super) to_parent: File,
    pub(super) from_parent: File,
    /// isol's pid (in isol's pid namespace): what the jail's uids derive from, since the
    /// VMM itself is pid 1 of its own namespace.
    pub isol_pid: u32,
}

impl ChildLink {
    /// Sends a message to isol (best effort: if isol is gone the VMM dies with it).
    pub fn send(&mut self, m: &Message) {
        let _ = send(&mut self.to_parent, m);
    }

    /// Blocks until isol says go (true) or is gone / cancels (false).
    pub fn wait_go(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.from_parent.read(&mut b), Ok(1) if b[0] == b'G')
    }

    /// Renders `e` and its causes as isol's `main` prints them (without the `isol: `).
    pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
        let mut s = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            s.push_str(&format!("\n  caused by: {cause}"));
            source = cause.source();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_every_message_round_trips() {
        let all = [
            Message::Ready,
            Message::Exit(WorkloadExit::Exited(3)),
            Message::Exit(WorkloadExit::Signaled(9)),
            Message::Exit(WorkloadExit::TimedOut),
            Message::Exit(WorkloadExit::ExecFailed {
                failure: ExecFailure::NotFound,
                command: "nope".into(),
            }),
            Message::Exit(WorkloadExit::ExecFailed {
                failure: ExecFailure::NotExecutable(13),
                command: "/etc/passwd".into(),
            }),
            Message::Code(124),
            Message::Error("Cannot run\n  caused by: x".into()),
        ];
        let mut wire = Vec::new();
        for m in &all {
            send(&mut wire, m).unwrap();
        }
        let mut r = &wire[..];
        for m in &all {
            assert_eq!(receive(&mut r).unwrap().as_ref(), Some(m));
        }
        assert_eq!(receive(&mut r).unwrap(), None);
    }

    #[test]
    fn test_garbage_and_cut_messages_are_errors() {
        assert!(Message::decode(b"").is_none());
        assert!(Message::decode(b"Q").is_none());
        assert!(Message::decode(b"S\x01").is_none());
        assert!(Message::decode(b"E\x01").is_none());
        let mut cut: &[u8] = &[5, 0, 0, 0, b'F'];
        assert!(receive(&mut cut).is_err());
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(receive(&mut huge).is_err());
    }
}
