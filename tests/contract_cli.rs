//! Black-box tests of the rest of the CLI contract (root), each run in both modes where it
//! applies: `--spec FILE` (TOML, flags over the file, env and volumes from it), `--verbose`,
//! `--user UID` without a gid, stdin from /dev/null, a workload that never reads a large
//! stdin, multi-MB binary stdout and stderr; and `isol kernel`, `isol compare` (table and
//! `--json`), which are not per mode.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::path::{Path, PathBuf};

use support::{assert_code, run_isol, run_isol_stdin_null, stderr, stdout, Mode};

/// A directory under /tmp (the nested lab shares /tmp with the host), world-readable.
fn shared_tmp() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("isol-cli")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    d
}

/// Writes a spec file with a command, env, cwd, user, hostname and a read-only volume.
fn spec_file(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in"), "volume-data\n").unwrap();
    let spec = format!(
        r#"hostname = "fromfile"
[process]
args = ["sh", "-c", "hostname; pwd; echo $GREETING $OTHER; cat /data/in; id -u; id -g; echo x > /data/w || echo ro"]
env = {{ GREETING = "hello" }}
cwd = "/tmp"
user = {{ uid = 1000, gid = 1001 }}
[[volumes]]
host = "{}"
path = "/data"
read_only = true
"#,
        data.display()
    );
    let f = dir.join("spec.toml");
    std::fs::write(&f, spec).unwrap();
    f
}

fn spec_file_gives_command_env_cwd_user_and_volumes(mode: Mode) {
    let tmp = shared_tmp();
    let spec = spec_file(tmp.path());
    let out = run_isol(mode, &["--spec", spec.to_str().unwrap()], b"");
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        "fromfile\n/tmp\nhello\nvolume-data\n1000\n1001\nro\n"
    );
    // read_only = true: the write fails with EROFS.
    assert_eq!(
        stderr(&out),
        "sh: can't create /data/w: Read-only file system\n"
    );
}

fn flags_override_the_spec_file(mode: Mode) {
    let tmp = shared_tmp();
    let spec = spec_file(tmp.path());
    let spec = spec.to_str().unwrap();
    // Each flag wins over its field; -e adds to the file's env and wins per key; the
    // volume still comes from the file.
    let args = [
        "--spec",
        spec,
        "--hostname",
        "flag",
        "--workdir",
        "/",
        "-e",
        "GREETING=flag",
        "-e",
        "OTHER=o",
        "--user",
        "0:0",
    ];
    let out = run_isol(mode, &args, b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "flag\n/\nflag o\nvolume-data\n0\n0\nro\n");
    // A command after `--` replaces process.args.
    let out = run_isol(mode, &["--spec", spec, "--", "echo", "override"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "override\n");
}

fn bad_spec_file_125_names_the_field(mode: Mode) {
    let tmp = shared_tmp();
    for (toml, needle) in [
        ("bogus = 1\n", "unknown field `bogus`"),
        (
            "hostname = 3\n",
            "invalid type: integer `3`, expected a string",
        ),
        ("[resources]\nmemory = \"lots\"\n", "\"lots\" is not a size"),
    ] {
        let f = tmp.path().join("bad.toml");
        std::fs::write(&f, toml).unwrap();
        let out = run_isol(mode, &["--spec", f.to_str().unwrap(), "--", "true"], b"");
        assert_code(&out, 125);
        assert!(stderr(&out).contains(needle), "{toml:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

fn verbose_adds_diagnostics_on_stderr_only(mode: Mode) {
    let quiet = run_isol(mode, &["--", "echo", "hi"], b"");
    assert_code(&quiet, 0);
    assert_eq!(stdout(&quiet), "hi\n");
    assert_eq!(stderr(&quiet), "", "isol is silent without --verbose");
    let loud = run_isol(mode, &["--verbose", "--", "echo", "hi"], b"");
    assert_code(&loud, 0);
    assert_eq!(stdout(&loud), "hi\n", "--verbose never touches stdout");
    let err = stderr(&loud);
    match mode {
        Mode::Container => assert!(err.starts_with("isol: container "), "{err}"),
        // The guest kernel's console, which otherwise goes to a log file.
        Mode::Vm => assert!(
            err.starts_with("Linux version ") && err.contains("Run /init as init process"),
            "{err}"
        ),
    }
}

fn user_uid_without_gid_gets_gid_0(mode: Mode) {
    // No gid given: group 0, the only supplementary group (uid 1000 has no passwd entry in
    // the busybox rootfs, so docker gives gid 0 too).
    let out = run_isol(
        mode,
        &["--user", "1000", "--", "sh", "-c", "id -u; id -g; id -G"],
        b"",
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "1000\n0\n0\n");
}

fn stdin_from_dev_null_is_eof(mode: Mode) {
    let out = run_isol_stdin_null(mode, &["--", "sh", "-c", "wc -c; echo done"]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["0", "done"]
    );
    assert_eq!(stderr(&out), "");
}

fn large_stdin_never_read_does_not_hang(mode: Mode) {
    // 32 MB offered, none read: the run ends with the workload (the harness's watchdog
    // fails a hang), its output and code intact.
    let data = vec![b'x'; 32 << 20];
    let out = run_isol(mode, &["--", "sh", "-c", "echo hi; exit 3"], &data);
    assert_code(&out, 3);
    assert_eq!(stdout(&out), "hi\n");
}

fn multi_mb_binary_stdout_and_stderr_byte_exact(mode: Mode) {
    // 4 MB of every byte value, through the workload to both streams at once.
    let data: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let out = run_isol(mode, &["--", "tee", "/dev/stderr"], &data);
    assert_code(&out, 0);
    assert!(
        out.stdout == data,
        "stdout differs ({} of {} bytes)",
        out.stdout.len(),
        data.len()
    );
    assert!(
        out.stderr == data,
        "stderr differs ({} of {} bytes)",
        out.stderr.len(),
        data.len()
    );
}

in_both_modes!(
    spec_file_gives_command_env_cwd_user_and_volumes,
    flags_override_the_spec_file,
    bad_spec_file_125_names_the_field,
    verbose_adds_diagnostics_on_stderr_only,
    user_uid_without_gid_gets_gid_0,
    stdin_from_dev_null_is_eof,
    large_stdin_never_read_does_not_hang,
    multi_mb_binary_stdout_and_stderr_byte_exact,
);
