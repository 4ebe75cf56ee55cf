//! Black-box tests of `isol kernel` and `isol compare` (root): what they print, checked by
//! structure. `isol compare` measures both modes (VM mode through the nested lab on a PVM
//! host, in the suite's lab session), so this also runs a workload in both.

mod support;

use std::process::{Command, Output};

use support::{assert_code, isol_bin, require_root, run_raw, skip_privileged, stderr, stdout};

#[test]
fn test_kernel_describes_the_default_guest_kernel() {
    let out = run_raw(&["kernel"], b"");
    assert_code(&out, 0);
    let text = stdout(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name:?} line in:\n{text}"))
            .trim()
            .to_string()
    };
    let path = field("Guest kernel:");
    let size: u64 = field("size:")
        .strip_suffix(" bytes")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("size line in:\n{text}"));
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{path}: {e}\n{text}"));
    assert_eq!(meta.len(), size, "the size shown is the file's");
    assert!(field("boot:").contains("PVH"), "{text}");
    assert!(field("source:").starts_with("linux-source-6.1"), "{text}");
    assert!(text.contains("kernels/build.sh"), "how to build it: {text}");
}

#[test]
fn test_kernel_describes_the_file_given_and_refuses_a_missing_one() {
    // A tiny PVH guest of vmm/tests/guests: described as such, with its own size.
    let dir = tempfile::tempdir().expect("temp dir");
    let st = Command::new("sh")
        .arg(support::repo_root().join("vmm/tests/guests/build.sh"))
        .arg(dir.path())
        .status()
        .expect("run vmm/tests/guests/build.sh");
    assert!(
        st.success(),
        "assembling the tiny guests failed (binutils?)"
    );
    let guest = dir.path().join("hello-pvh");
    let out = run_raw(&["kernel", "--kernel", guest.to_str().expect("utf-8")], b"");
    assert_code(&out, 0);
    let text = stdout(&out);
    let size = std::fs::metadata(&guest).expect("the guest").len();
    assert_eq!(
        text.lines().take(4).map(str::trim).collect::<Vec<_>>()[..3],
        [
            format!("Guest kernel: {}", guest.display()),
            "from:        --kernel".to_string(),
            format!("size:        {size} bytes"),
        ],
        "{text}"
    );
    assert!(text.contains("ELF with a PVH entry note"), "{text}");
    let out = run_raw(&["kernel", "--kernel", "/nonexistent/vmlinux"], b"");
    assert_code(&out, 125);
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "isol: Guest kernel /nonexistent/vmlinux does not exist\n"
    );
}

/// `isol compare ARGS...` with the suite's lab settings (a PVM host runs the VM column in
/// the lab session).
fn compare(args: &[&str]) -> Output {
    require_root();
    let mut cmd = Command::new(isol_bin());
    cmd.arg("compare").args(args);
    support::lab_env(&mut cmd);
    support::run_with_stdin(&mut cmd, b"")
}

#[test]
fn test_compare_table_has_both_columns_and_agrees() {
    if skip_privileged("test_compare_table_has_both_columns_and_agrees") {
        return;
    }
    let out = compare(&["--runs", "1", "--", "echo", "hi"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let row = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} row in:\n{text}"));
        line[line.find(name).unwrap_or(0) + name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let header: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["container", "vm"], "{text}");
    assert_eq!(row("exit codes"), ["[0]", "[0]"], "{text}");
    assert_eq!(row("exit status and stdout agree"), ["yes"], "{text}");
    assert_eq!(row("kernel shared with host"), ["yes", "no"], "{text}");
    assert_eq!(row("network interfaces"), ["lo", "lo"], "{text}");
}

#[test]
fn test_compare_json_reports_both_modes_structurally() {
    if skip_privileged("test_compare_json_reports_both_modes_structurally") {
        return;
    }
    let out = compare(&["--runs", "1", "--json", "--", "echo", "hi"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(&out)));
    assert_eq!(v["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(v["runs"], 1);
    assert_eq!(v["outputs_agree"], true);
    let modes = v["modes"].as_array().expect("modes is an array");
    let names: Vec<&str> = modes.iter().filter_map(|m| m["mode"].as_str()).collect();
    assert_eq!(names, ["container", "vm"], "{v:#}");
    let mut digests = Vec::new();
    for m in modes {
        let samples = m["samples"].as_array().expect("samples is an array");
        assert_eq!(samples.len(), 1, "{m:#}");
        for s in samples {
            assert_eq!(s["exit_code"], 0, "{s:#}");
            assert_eq!(s["stdout_bytes"], 3, "{s:#}");
            assert!(s["exit_ms"].as_f64().is_some_and(|t| t > 0.0), "{s:#}");
            assert!(
                s["isol_max_rss_kib"].as_u64().is_some_and(|k| k > 0),
                "{s:#}"
            );
            digests.push(s["stdout_digest"].clone());
        }
        let probe = &m["probe"];
        assert_eq!(probe["ok"], true, "{m:#}");
        assert_eq!(probe["cap_eff"], "00000000a80425fb", "{m:#}");
        assert_eq!(probe["no_new_privs"], "1", "{m:#}");
        assert_eq!(probe["interfaces"], "lo", "{m:#}");
        let shared = m["mode"] == "container";
        assert_eq!(probe["kernel_shared"], shared, "{m:#}");
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}
