//! The control socket's protocol (`<run dir>/control.sock`, mode 0600, served by the
//! run's supervisor). One connection carries one exchange: the client writes one JSON
//! object on one line, the supervisor answers one JSON object on one line and closes.
//! Documented in docs/lifecycle.md.
//!
//! Requests (`op` names the operation):
//! - `{"op":"state"}`: the run's current record;
//! - `{"op":"signal","signal":N}`: send signal N to the workload's process (container:
//!   its init, which forwards the usual signals to the workload; SIGKILL ends the whole
//!   container);
//! - `{"op":"stop","timeout_secs":S}`: SIGTERM, then SIGKILL after S seconds; the
//!   answer comes once the workload has ended;
//! - `{"op":"wait"}`: the answer comes once the workload has ended.
//!
//! Answers: `{"ok":true,"state":{...}}` (the record, see [`crate::state::RunState`]) or
//! `{"ok":false,"error":"..."}`. Unknown operations and malformed lines get an error
//! answer; unknown fields are ignored (newer clients); `exec` and `resize` are reserved
//! for later versions.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::state::RunState;

/// The socket's file name in the run's directory.
pub const SOCKET_FILE: &str = "control.sock";

/// Longest request line the supervisor reads.
pub const MAX_LINE: u64 = 4096;

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// The current record.
    State,
    /// Send a signal.
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// SIGTERM, then SIGKILL after `timeout_secs`.
    Stop {
        /// Seconds between the two.
        timeout_secs: f64,
    },
    /// Wait for the end.
    Wait,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// The record (with `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
    /// What went wrong (without `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A successful answer carrying `state`.
    pub fn state(state: RunState) -> Response {
        Response {
            ok: true,
            state: Some(state),
            error: None,
        }
    }

    /// A failed answer.
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            state: None,
            error: Some(msg.into()),
        }
    }
}

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim()).map_err(|e| format!("bad request: {e}"))
}

/// Reads one line (at most [`MAX_LINE`] bytes) from `r`.
pub fn read_line(r: impl std::io::Read) -> std::io::Result<String> {
    let mut line = String::new();
    BufReader::new(r.take(MAX_LINE)).read_line(&mut line)?;
    Ok(line)
}

/// Sends `req` to the supervisor listening on `socket` and returns its answer.
pub fn call(socket: &Path, req: &Request) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(socket)?;
    let mut line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad answer from the supervisor: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_requests() {
        assert_eq!(parse_request(r#"{"op":"state"}"#), Ok(Request::State));
        assert_eq!(
            parse_request(" {\"op\":\"signal\",\"signal\":15}\n"),
            Ok(Request::Signal { signal: 15 })
        );
        assert_eq!(
            parse_request(r#"{"op":"stop","timeout_secs":2.5}"#),
            Ok(Request::Stop { timeout_secs: 2.5 })
        );
        assert_eq!(parse_request(r#"{"op":"wait"}"#), Ok(Request::Wait));
    }

    #[test]
    fn test_parse_rejects_unknown_and_malformed() {
        for bad in [
            "",
            "{",
            r#"{"op":"exec"}"#,
            r#"{"op":"signal"}"#,
            r#"{"op":"signal","signal":"TERM"}"#,
        ] {
            assert!(parse_request(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_request_wire_form_and_answers() {
        let j = serde_json::to_string(&Request::Signal { signal: 9 }).unwrap();
        assert_eq!(j, r#"{"op":"signal","signal":9}"#);
        let e = serde_json::to_string(&Response::error("no")).unwrap();
        assert_eq!(e, r#"{"ok":false,"error":"no"}"#);
    }

    #[test]
    fn test_read_line_is_bounded() {
        let long = vec![b'x'; 10_000];
        let line = read_line(&long[..]).unwrap();
        assert_eq!(line.len() as u64, MAX_LINE);
    }
}
