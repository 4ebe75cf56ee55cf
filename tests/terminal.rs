//! `isol run -i -t`, black-box, in real terminals: each test starts its own tmux server
//! (a pty the test does not own), types into it (send-keys) and reads the screen
//! (capture-pane). Waiting is a watchdog: poll the pane until a marker appears, with a
//! generous deadline; nothing asserts on time. Markers are written so that the typed
//! command line does not contain them (`echo A""B` prints `AB`).
//!
//! Container mode (VM mode refuses -t so far, with exit 125): `isol run -it` and
//! `isol exec -it` into a detached run.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::tmux::{isol, wait_for_process, Tmux};
use support::{
    assert_code, default_rootfs, isol_bin, require_root, run_ok, skip_privileged, stderr, stdout,
};

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

/// A detached `sleep` run in a private state dir, removed (rm -f) when dropped.
struct Detached {
    root: PathBuf,
    name: String,
}

impl Detached {
    fn start(test: &str) -> Detached {
        require_root();
        let root = scratch().join(format!("runs-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create the runs dir");
        let d = Detached {
            root,
            name: format!("tty-{test}-{}", std::process::id()),
        };
        let out = d
            .isol(&["run", "--mode", "container", "-d", "--name", &d.name])
            .args(["--hostname", "wkld", "--", "sleep", "600"])
            .output()
            .expect("run isol");
        assert_code(&out, 0);
        d
    }

    fn isol(&self, args: &[&str]) -> Command {
        let mut c = Command::new(isol_bin());
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    /// The `isol exec` command line for the pane's shell.
    fn exec_line(&self, args: &str) -> String {
        format!("{} --root {} exec {args}", isol(), self.root.display())
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let _ = self.isol(&["rm", "-f", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `isol exec -it` into a detached run: a pty of the container's own devpts (the run had
/// none: /dev/pts/0), the exec's hostname is the run's, size and resize, Ctrl-C reaches
/// the exec'd shell's job, `exit 3` is isol exec's 3, the caller's terminal restored.
#[test]
fn exec_tty_prompt_size_ctrl_c_exit_code_and_settings_restored() {
    if skip_privileged("terminal::exec_tty_prompt_size_ctrl_c_exit_code_and_settings_restored") {
        return;
    }
    let run = Detached::start("exec");
    let t = Tmux::new("exec");
    let dir = scratch().join(format!("exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    t.line(&format!(
        "stty -g > {d}/before; {}; echo rc=$?; stty -g > {d}/after; echo DO''NE",
        run.exec_line(&format!("-it {} -- sh", run.name))
    ));
    t.line("echo IN''SIDE $(tty) $(hostname)");
    t.wait_for("INSIDE /dev/pts/0 wkld");
    t.line("echo SZ1=$(stty size | tr ' ' x)");
    t.wait_for("SZ1=30x100");
    t.resize(120, 40);
    t.line("echo SZ2=$(stty size | tr ' ' x)");
    t.wait_for("SZ2=40x120");
    t.line("sleep 1021");
    wait_for_process("^sleep 1021$");
    t.key("C-c");
    t.line("echo ST=$?");
    t.wait_for("ST=130");
    t.line("exit 3");
    t.wait_for("rc=3");
    t.wait_for("DONE");
    assert_eq!(saved_stty(&dir, "before"), saved_stty(&dir, "after"));
    // The run itself goes on: another (plain) exec still works.
    let out = run
        .isol(&[
            "exec",
            &run.name,
            "--",
            "sh",
            "-c",
            "test -t 0 || echo no-tty",
        ])
        .output()
        .expect("run isol exec");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "no-tty\n");
}

#[test]
fn exec_tty_without_a_terminal_on_stdin_is_refused_with_125() {
    if skip_privileged("terminal::exec_tty_without_a_terminal_on_stdin_is_refused_with_125") {
        return;
    }
    let run = Detached::start("exec-notty");
    let out = run
        .isol(&["exec", "-it", &run.name, "--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("run isol exec");
    assert_code(&out, 125);
    assert!(
        stderr(&out).contains("-t/--tty needs a terminal on isol's stdin"),
        "{}",
        stderr(&out)
    );
}
