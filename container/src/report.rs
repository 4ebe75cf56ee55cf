//! What the container's init tells isol over its report pipe. Each message is one
//! write(2) shorter than PIPE_BUF, so it arrives whole: a kind byte, an i32 (little
//! endian), a u16 length and that many bytes of text.

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
    fn test_report_truncated_tail_ignored() {
        let mut bytes = Report::Exec(13).encode();
        bytes.extend_from_slice(&Report::Exited(1).encode()[..3]);
        assert_eq!(Report::decode_all(&bytes), [Report::Exec(13)]);
    }
}
