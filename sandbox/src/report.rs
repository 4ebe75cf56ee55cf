//! The one wire type for "how the workload ended" inside the sandbox, in both modes: what
//! the workload process (before its execve) and the PID-1 supervisor tell their parent
//! (isol in container mode, the guest init in VM mode) over a report pipe. Each message is
//! one write(2) shorter than PIPE_BUF, so it arrives whole: a kind byte, an i32 (little
//! endian), a u16 length and that many bytes of text. The guest init turns the result into
//! the channel's 32-bit `ExitReport` for the host; isol into its `WorkloadExit`.

use std::os::fd::AsFd;

/// One message from inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Setting up failed: what was being done, and errno.
    Setup {
        /// The failed operation.
        what: String,
        /// errno.
        errno: i32,
    },
    /// execve of the workload failed with this errno.
    Exec(i32),
    /// The workload exited with this code.
    Exited(i32),
    /// The workload was killed by this signal.
    Signaled(i32),
}

/// How a run ended, from every report received (see [`Report::outcome`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Setting up failed (the first such report).
    Setup {
        /// The failed operation.
        what: String,
        /// errno.
        errno: i32,
    },
    /// execve failed with this errno: 127 or 126.
    Exec(i32),
    /// The workload exited with this code.
    Exited(u8),
    /// The workload was killed by this signal.
    Signaled(i32),
}

/// Longest text carried (keeps messages under PIPE_BUF = 4096).
const MAX_TEXT: usize = 1024;

impl Report {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, n, text) = match self {
            Report::Setup { what, errno } => (b'S', *errno, what.as_bytes()),
            Report::Exec(e) => (b'E', *e, &[][..]),
            Report::Exited(c) => (b'X', *c, &[][..]),
            Report::Signaled(s) => (b'K', *s, &[][..]),
        };
        let text = &text[..text.len().min(MAX_TEXT)];
        let mut out = Vec::with_capacity(7 + text.len());
        out.push(kind);
        out.extend_from_slice(&n.to_le_bytes());
        // text.len() <= MAX_TEXT < u16::MAX.
        #[allow(clippy::cast_possible_truncation)]
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text);
        out
    }

    /// Writes the message to `fd` (nothing to do if the reader is gone).
    pub fn send(&self, fd: impl AsFd) {
        let _ = nix::unistd::write(fd, &self.encode());
    }

    /// How the run ended: a setup failure wins, then an exec failure, then the first
    /// exit or signal; `None` when no report says (the sender died first).
    pub fn outcome(reports: &[Report]) -> Option<Outcome> {
        let setup = reports.iter().find_map(|r| match r {
            Report::Setup { what, errno } => Some(Outcome::Setup {
                what: what.clone(),
                errno: *errno,
            }),
            _ => None,
        });
        let exec = || {
            reports.iter().find_map(|r| match r {
                Report::Exec(e) => Some(Outcome::Exec(*e)),
                _ => None,
            })
        };
        let end = || {
            reports.iter().find_map(|r| match r {
                Report::Exited(c) => Some(Outcome::Exited(u8::try_from(*c & 0xff).unwrap_or(255))),
                Report::Signaled(s) => Some(Outcome::Signaled(*s)),
                _ => None,
            })
        };
        setup.or_else(exec).or_else(end)
    }

    /// Decodes every whole message in `buf`; a truncated tail is ignored.
    pub fn decode_all(mut buf: &[u8]) -> Vec<Report> {
        let mut out = Vec::new();
        while buf.len() >= 7 {
            let n = i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
            let len = usize::from(u16::from_le_bytes([buf[5], buf[6]]));
            if buf.len() < 7 + len {
                break;
            }
            let text = String::from_utf8_lossy(&buf[7..7 + len]).into_owned();
            match buf[0] {
                b'S' => out.push(Report::Setup {
                    what: text,
                    errno: n,
                }),
                b'E' => out.push(Report::Exec(n)),
                b'X' => out.push(Report::Exited(n)),
                b'K' => out.push(Report::Signaled(n)),
                _ => break,
            }
            buf = &buf[7 + len..];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_report_round_trip_several_messages() {
        let msgs = [
            Report::Setup {
                what: "mount proc on /x".into(),
                errno: 1,
            },
            Report::Exec(2),
            Report::Exited(7),
            Report::Signaled(9),
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(Report::encode).collect();
        assert_eq!(Report::decode_all(&bytes), msgs);
    }

    #[test]
    fn test_outcome_precedence() {
        let setup = Report::Setup {
            what: "x".into(),
            errno: 1,
        };
        assert_eq!(
            Report::outcome(&[Report::Exec(2), setup.clone(), Report::Exited(1)]),
            Some(Outcome::Setup {
                what: "x".into(),
                errno: 1
            })
        );
        assert_eq!(
            Report::outcome(&[Report::Exited(127), Report::Exec(13)]),
            Some(Outcome::Exec(13))
        );
        assert_eq!(
            Report::outcome(&[Report::Signaled(9)]),
            Some(Outcome::Signaled(9))
        );
        assert_eq!(Report::outcome(&[]), None);
    }

    #[test]
    fn test_report_truncated_tail_ignored() {
        let mut bytes = Report::Exec(13).encode();
        bytes.extend_from_slice(&Report::Exited(1).encode()[..3]);
        assert_eq!(Report::decode_all(&bytes), [Report::Exec(13)]);
    }
}
