//! ps, logs, kill, stop, wait, rm, inspect, and the runs part of gc. Each finds its run
//! in the state directory (id, id prefix or name; unknown: exit 125) and talks to the
//! run's supervisor over its control socket; a run whose supervisor died is reported as
//! `unknown` and cleaned by `rm` or `gc`.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use isol_runs::process::{pidfd_exited, pidfd_open};
use isol_runs::proto::Request;
use isol_runs::{RunState, Status, Store};
use nix::sys::signal::Signal;

use super::args::{InspectArgs, KillArgs, LogsArgs, PsArgs, RmArgs, RunRef, StopArgs};
use super::{ask, dead, socket, status, supervisor_alive, Failure, STDERR_LOG, STDOUT_LOG};
use crate::run::CliResult;

/// How long `rm` waits for an ended run's supervisor to finish exiting.
const SUPERVISOR_EXIT: i32 = 10_000;

/// `isol ps`.
pub fn ps(store: &Store, a: &PsArgs) -> CliResult {
    let runs: Vec<RunState> = store
        .list()
        .into_iter()
        .filter(|r| a.all || status(r) != "exited")
        .collect();
    if a.json {
        let list: Vec<_> = runs.iter().map(|r| view(store, r)).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    println!(
        "{:<12}  {:<16}  {:<9}  {:<8}  {:>7}  {:<12}  {:>4}  COMMAND",
        "ID", "NAME", "MODE", "STATE", "PID", "STARTED", "EXIT"
    );
    let now = isol_runs::state::now();
    for r in &runs {
        let opt = |v: Option<i32>| v.map_or_else(|| "-".into(), |v| v.to_string());
        println!(
            "{:<12}  {:<16}  {:<9}  {:<8}  {:>7}  {:<12}  {:>4}  {}",
            &r.id[..r.id.len().min(12)],
            r.name.as_deref().unwrap_or("-"),
            r.mode,
            status(r),
            opt(r.pid),
            r.started
                .map_or_else(|| "-".into(), |t| ago(now.saturating_sub(t))),
            opt(r.exit_code),
            r.command.join(" ")
        );
    }
    Ok(0)
}

fn ago(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// The record with what `ps --json` and `inspect` add: the live status and the paths.
fn view(store: &Store, r: &RunState) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    let dir = store.dir(&r.id);
    if let Some(o) = v.as_object_mut() {
        o.insert("status".into(), status(r).into());
        o.insert("dir".into(), dir.to_string_lossy().into());
        o.insert(
            "stdout_log".into(),
            dir.join(STDOUT_LOG).to_string_lossy().into(),
        );
        o.insert(
            "stderr_log".into(),
            dir.join(STDERR_LOG).to_string_lossy().into(),
        );
        o.insert(
            "socket".into(),
            socket(store, &r.id).to_string_lossy().into(),
        );
    }
    v
}

/// `isol inspect`.
pub fn inspect(store: &Store, a: &InspectArgs) -> CliResult {
    let r = store.find(&a.run)?;
    let v = view(store, &r);
    if a.json {
        println!("{v}");
        return Ok(0);
    }
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            let text = match val {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("{k}: {text}");
        }
    }
    Ok(0)
}

/// The record of a run that must be live (created or running).
fn live(store: &Store, key: &str) -> Result<RunState, Failure> {
    let r = store.find(key)?;
    match status(&r) {
        "exited" => Err(format!(
            "Run {} is not running (it exited with {})",
            r.short_name(),
            r.exit_code.unwrap_or(-1)
        )
        .into()),
        "unknown" => Err(dead(&r).into()),
        _ => Ok(r),
    }
}

/// A signal by name (`TERM`, `SIGTERM`) or number.
pub fn parse_signal(s: &str) -> Result<i32, Failure> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    Signal::from_str(&name).map(|sig| sig as i32).map_err(|_| {
        format!("Unknown signal {s:?}: use a name (TERM, KILL, HUP...) or 1-64").into()
    })
}

/// `isol kill`.
pub fn kill(store: &Store, a: &KillArgs) -> CliResult {
    let signal = parse_signal(&a.signal)?;
    let r = live(store, &a.run)?;
    ask(store, &r, &Request::Signal { signal })?;
    println!("{}", a.run);
    Ok(0)
}

/// `isol stop`.
pub fn stop(store: &Store, a: &StopArgs) -> CliResult {
    let r = store.find(&a.run)?;
    if !(0.0..1e9).contains(&a.time) {
        return Err(format!("--time {}: use 0 or more seconds", a.time).into());
    }
    match status(&r) {
        "exited" => {}
        "unknown" => return Err(dead(&r).into()),
        _ => {
            ask(
                store,
                &r,
                &Request::Stop {
                    timeout_secs: a.time,
                },
            )?;
        }
    }
    println!("{}", a.run);
    Ok(0)
}

/// `isol wait`: exits with the run's exit code.
pub fn wait(store: &Store, a: &RunRef) -> CliResult {
    let r = store.find(&a.run)?;
    let end = match status(&r) {
        "exited" => r,
        "unknown" => return Err(dead(&r).into()),
        _ => ask(store, &r, &Request::Wait)?,
    };
    if let Some(m) = &end.message {
        eprintln!("{m}");
    }
    end.exit_code
        .ok_or_else(|| format!("Run {} ended without an exit code", end.short_name()).into())
}

/// Waits until the run's supervisor process is gone (bounded).
fn supervisor_gone(r: &RunState) {
    let Ok(fd) = pidfd_open(r.supervisor_pid) else {
        return;
    };
    // Opened first, checked second: the pidfd is the supervisor's if it still is alive.
    if supervisor_alive(r) {
        pidfd_exited(&fd, SUPERVISOR_EXIT);
    }
}

/// What a run whose supervisor died may have left: its cgroups (the workload died with
/// the supervisor, by its parent-death signal).
fn clean_dead(r: &RunState) {
    if r.mode == "vm" {
        let _ = isol_vmm::gc();
    } else {
        let _ = isol_container::gc();
    }
}

/// `isol rm`.
pub fn rm(store: &Store, a: &RmArgs) -> CliResult {
    let r = store.find(&a.run)?;
    match status(&r) {
        "running" | "created" if !a.force => {
            return Err(format!(
                "Run {} is running; stop it first (`isol stop {}`) or use `isol rm -f`",
                r.short_name(),
                a.run
            )
            .into())
        }
        "running" | "created" => {
            ask(store, &r, &Request::Stop { timeout_secs: 0.0 })?;
            supervisor_gone(&r);
        }
        "exited" => supervisor_gone(&r),
        _ => clean_dead(&r),
    }
    store.remove(&r.id)?;
    println!("{}", a.run);
    Ok(0)
}

/// `isol gc`'s part: removes the state of runs whose supervisor died; a line for each
/// (the backends' own gc, which `isol gc` runs next, removes their cgroups).
pub fn gc_runs(store: &Store) -> Vec<String> {
    let mut removed = Vec::new();
    for r in store.list() {
        if status(&r) == "unknown" && store.remove(&r.id).is_ok() {
            removed.push(format!("run {} (its supervisor died)", r.id));
        }
    }
    removed
}

/// `isol logs`.
pub fn logs(store: &Store, a: &LogsArgs) -> CliResult {
    let r = store.find(&a.run)?;
    let dir = store.dir(&r.id);
    let mut streams: Vec<(std::fs::File, Box<dyn Write>)> = Vec::new();
    if !a.stderr {
        streams.push((open_log(&dir, STDOUT_LOG)?, Box::new(std::io::stdout())));
    }
    if !a.stdout {
        streams.push((open_log(&dir, STDERR_LOG)?, Box::new(std::io::stderr())));
    }
    loop {
        let ended = !a.follow || {
            let now = RunState::read(&dir).unwrap_or_else(|_| r.clone());
            now.state == Status::Exited || !supervisor_alive(&now)
        };
        for (file, out) in &mut streams {
            copy_new(file, out.as_mut())?;
        }
        if ended {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn open_log(dir: &Path, name: &str) -> Result<std::fs::File, Failure> {
    let path = dir.join(name);
    std::fs::File::open(&path).map_err(|e| format!("Cannot open {}: {e}", path.display()).into())
}

/// Copies what was appended since the last call (the file's offset remembers).
fn copy_new(file: &mut std::fs::File, out: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = [0u8; 65536];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return out.flush();
        }
        out.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_signal_names_and_numbers() {
        assert_eq!(parse_signal("TERM").unwrap(), 15);
        assert_eq!(parse_signal("sigkill").unwrap(), 9);
        assert_eq!(parse_signal("SIGHUP").unwrap(), 1);
        assert_eq!(parse_signal("10").unwrap(), 10);
        for bad in ["0", "65", "NOPE", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_ago() {
        assert_eq!(ago(5), "5s ago");
        assert_eq!(ago(120), "2m ago");
        assert_eq!(ago(7200), "2h ago");
        assert_eq!(ago(200_000), "2d ago");
    }
}
