//! `isol run -i -t`, black-box, in real terminals: each test starts its own tmux server
//! (a pty the test does not own), types into it (send-keys) and reads the screen
//! (capture-pane). Waiting is a watchdog: poll the pane until a marker appears, with a
//! generous deadline; nothing asserts on time. Markers are written so that the typed
//! command line does not contain them (`echo A""B` prints `AB`).
//!
//! Container mode (VM mode refuses -t so far, with exit 125).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    assert_code, default_rootfs, isol_bin, require_root, run_ok, skip_privileged, stderr, stdout,
};

/// How long a marker may take to appear (the machine is shared and may be slow).
const DEADLINE: Duration = Duration::from_secs(120);

/// A detached tmux session of its own server, running a plain bash, 100x30.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(test: &str) -> Tmux {
        require_root();
        let tmux = Command::new("tmux").arg("-V").output();
        assert!(
            tmux.is_ok_and(|o| o.status.success()),
            "these tests need tmux (apt-get install -y tmux)"
        );
        let t = Tmux {
            socket: format!("isol-term-{test}-{}", std::process::id()),
        };
        run_ok(t.cmd().args([
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            "env",
            "PS1=$ ",
            "bash",
            "--norc",
            "--noprofile",
        ]));
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// Types `text` and Enter.
    fn line(&self, text: &str) {
        run_ok(self.cmd().args(["send-keys", "-t", "t", "-l", text]));
        self.key("Enter");
    }

    /// Presses one key (tmux name: C-c, C-z, C-d, Enter).
    fn key(&self, key: &str) {
        run_ok(self.cmd().args(["send-keys", "-t", "t", key]));
    }

    fn resize(&self, cols: u16, rows: u16) {
        let (x, y) = (cols.to_string(), rows.to_string());
        run_ok(
            self.cmd()
                .args(["resize-window", "-t", "t", "-x", &x, "-y", &y]),
        );
    }

    /// The pane with its history, wrapped lines joined.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-1000", "-t", "t"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (watchdog) until the pane shows `marker`; returns the pane.
    fn wait_for(&self, marker: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(marker) {
                return s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{marker:?} did not appear within {DEADLINE:?}; the pane:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn isol() -> String {
    isol_bin().to_str().expect("UTF-8 path").to_string()
}

/// Waits (watchdog) for a process whose full command line matches `pattern` (pgrep -f);
/// returns its pid.
fn wait_for_process(pattern: &str) -> String {
    let start = Instant::now();
    loop {
        let out = Command::new("pgrep")
            .args(["-f", pattern])
            .output()
            .expect("pgrep");
        let pids = stdout(&out);
        if let Some(pid) = pids.lines().next() {
            return pid.to_string();
        }
        assert!(start.elapsed() < DEADLINE, "no process {pattern:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scratch() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("terminal");
    std::fs::create_dir_all(&d).expect("create target/tmp/terminal");
    d
}

/// `stty -g` of the tmux pane's terminal, saved by the pane's shell to `name`.
fn saved_stty(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).expect("the saved stty -g")
}

#[test]
fn tty_prompt_window_size_resize_exit_code_and_settings_restored() {
    if skip_privileged("terminal::tty_prompt_window_size_resize_exit_code_and_settings_restored") {
        return;
    }
    let t = Tmux::new("size");
    let dir = scratch().join(format!("size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    t.line(&format!(
        "stty -g > {d}/before; {} run -it -- sh; echo rc=$?; stty -g > {d}/after; echo DO''NE",
        isol()
    ));
    t.line("echo IN''SIDE $(tty)");
    t.wait_for("INSIDE /dev/pts/0");
    t.line("echo SZ1=$(stty size | tr ' ' x)");
    t.wait_for("SZ1=30x100");
    t.resize(120, 40);
    t.line("echo SZ2=$(stty size | tr ' ' x)");
    t.wait_for("SZ2=40x120");
    t.line("exit 3");
    t.wait_for("rc=3");
    t.wait_for("DONE");
    assert_eq!(saved_stty(&dir, "before"), saved_stty(&dir, "after"));
}

#[test]
fn tty_ctrl_c_interrupts_the_workloads_job_ctrl_d_ends_the_shell() {
    if skip_privileged("terminal::tty_ctrl_c_interrupts_the_workloads_job_ctrl_d_ends_the_shell") {
        return;
    }
    let t = Tmux::new("ctrlc");
    t.line(&format!("{} run -it -- sh; echo rc=$?", isol()));
    t.line("echo IN''SIDE");
    t.wait_for("INSIDE");
    t.line("sleep 1007");
    wait_for_process("^sleep 1007$");
    t.key("C-c");
    t.line("echo ST=$?");
    // The shell in the workload is still there and saw its job die of SIGINT.
    t.wait_for("ST=130");
    t.line("sleep 1008");
    wait_for_process("^sleep 1008$");
    t.key("C-z");
    t.wait_for("Stopped");
    t.line("kill -9 %1; echo KI''LLED");
    t.wait_for("KILLED");
    t.line("true");
    t.key("C-d");
    t.wait_for("rc=0");
}

#[test]
fn tty_settings_restored_after_workload_sigkill_and_signal_to_isol() {
    if skip_privileged("terminal::tty_settings_restored_after_workload_sigkill_and_signal_to_isol")
    {
        return;
    }
    let t = Tmux::new("kill");
    let dir = scratch().join(format!("kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    t.line(&format!(
        "stty -g > {d}/before; {} run -it -- sleep 1011; echo rc1=$?; stty -g > {d}/after1; echo ON''E",
        isol()
    ));
    let sleep = wait_for_process("^sleep 1011$");
    run_ok(Command::new("kill").args(["-KILL", &sleep]));
    t.wait_for("rc1=137");
    t.wait_for("ONE");
    assert_eq!(saved_stty(&dir, "before"), saved_stty(&dir, "after1"));
    // SIGTERM to isol itself is forwarded: the workload ends, isol restores and exits.
    t.line(&format!(
        "{} run -it -- sleep 1012; echo rc2=$?; stty -g > {d}/after2; echo TW''O",
        isol()
    ));
    wait_for_process("^sleep 1012$");
    let me = wait_for_process("isol run -it -- sleep 1012$");
    run_ok(Command::new("kill").args(["-TERM", &me]));
    t.wait_for("rc2=143");
    t.wait_for("TWO");
    assert_eq!(saved_stty(&dir, "before"), saved_stty(&dir, "after2"));
    // A signal isol does not forward without -t (SIGUSR1 would kill it, terminal raw):
    // with -t it is forwarded too, and the terminal is restored. Under `sh -c`, because
    // bash itself restores the terminal after a job that dies of a signal.
    t.line(&format!(
        "sh -c '{} run -it -- sleep 1013; echo rc3=$?'; stty -g > {d}/after3; echo THR''EE",
        isol()
    ));
    wait_for_process("^sleep 1013$");
    let me = wait_for_process("isol run -it -- sleep 1013$");
    run_ok(Command::new("kill").args(["-USR1", &me]));
    t.wait_for("rc3=138");
    t.wait_for("THREE");
    assert_eq!(saved_stty(&dir, "before"), saved_stty(&dir, "after3"));
}

/// Pushes argv[1] and a newline into the input of the terminal on fd 0 (TIOCSTI).
const INJECT_C: &str = r#"
#include <stdio.h>
#include <sys/ioctl.h>
int main(int argc, char **argv) {
    const char *s = argc > 1 ? argv[1] : "";
    for (const char *p = s; ; p++) {
        char c = *p ? *p : '\n';
        if (ioctl(0, TIOCSTI, &c) < 0) { perror("tiocsti"); return 1; }
        if (!*p) return 0;
    }
}
"#;

/// A copy of the default rootfs with the injector at /bin/inject.
fn inject_rootfs() -> PathBuf {
    let dir = scratch().join(format!("inject-rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run_ok(Command::new("cp").arg("-a").arg(default_rootfs()).arg(&dir));
    let src = scratch().join("inject.c");
    std::fs::write(&src, INJECT_C).expect("write inject.c");
    run_ok(
        Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(dir.join("bin/inject"))
            .arg(&src),
    );
    dir
}

/// TIOCSTI from the workload reaches only the workload's own pty: the injected command
/// runs in the workload's shell (hostname wkld), never in the caller's (the host's).
#[test]
fn tty_tiocsti_reaches_only_the_workloads_own_pty() {
    if skip_privileged("terminal::tty_tiocsti_reaches_only_the_workloads_own_pty") {
        return;
    }
    let root = inject_rootfs();
    let host = nix::unistd::gethostname().expect("hostname");
    let host = host.to_string_lossy();
    assert_ne!(host, "wkld");
    let t = Tmux::new("tiocsti");
    t.line(&format!(
        "{} run -it --hostname wkld --rootfs {} -- sh; echo rc=$?",
        isol(),
        root.display()
    ));
    t.line("echo IN''SIDE");
    t.wait_for("INSIDE");
    t.line("/bin/inject 'echo INJ_$(hostname)'");
    t.wait_for("INJ_wkld");
    t.line("exit 0");
    t.wait_for("rc=0");
    // Anything pushed into the caller's terminal would be read by its shell before this.
    t.line("echo OUT''ER");
    let screen = t.wait_for("OUTER");
    assert!(
        !screen.contains(&format!("INJ_{host}")),
        "the injection reached the caller's shell:\n{screen}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn tty_without_a_terminal_on_stdin_is_refused_with_125() {
    if skip_privileged("terminal::tty_without_a_terminal_on_stdin_is_refused_with_125") {
        return;
    }
    require_root();
    let out = Command::new(isol_bin())
        .args(["run", "-it", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("run isol");
    assert_code(&out, 125);
    assert!(
        stderr(&out).contains("-t/--tty needs a terminal on isol's stdin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn interactive_without_tty_keeps_stdin_a_pipe() {
    if skip_privileged("terminal::interactive_without_tty_keeps_stdin_a_pipe") {
        return;
    }
    require_root();
    let mut child = Command::new(isol_bin())
        .args([
            "run",
            "-i",
            "--",
            "sh",
            "-c",
            "cat; test -t 0 || echo stdin-not-a-tty",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run isol");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"a\x00b\n").expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait isol");
    assert_code(&out, 0);
    assert_eq!(out.stdout, b"a\x00b\nstdin-not-a-tty\n");
}
