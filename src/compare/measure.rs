//! One mode's measurements: repeated timed runs of `isol run`, a probe of what the
//! workload sees, and the size of what was booted or mounted.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isol_common::{Mode, WorkloadSpec};
use serde::{Deserialize, Serialize};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One timed run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Spawn to the first byte on stdout or stderr, in ms (None: no output).
    pub first_output_ms: Option<f64>,
    /// Spawn to exit, in ms.
    pub exit_ms: f64,
    /// isol's exit code.
    pub exit_code: i32,
    /// Peak RSS of the isol process (KiB). In VM mode this includes guest RAM the guest touched.
    pub isol_max_rss_kib: i64,
    /// Peak RSS of the largest process isol waited for (KiB): the container's processes.
    pub children_max_rss_kib: i64,
    /// FNV-1a of stdout, to check that both modes produced the same bytes.
    pub stdout_digest: String,
    /// stdout length in bytes.
    pub stdout_bytes: usize,
}

/// What was booted or mounted, with sizes in bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Footprint {
    /// Root filesystem directory size on disk (apparent bytes of its files).
    pub rootfs_bytes: u64,
    /// Guest kernel image size (VM mode).
    pub kernel_bytes: Option<u64>,
    /// Guest RAM given to the VM (VM mode); the container shares the host's.
    pub guest_ram_bytes: Option<u64>,
}

/// What the workload can see, probed from inside with the default rootfs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Probe {
    /// `uname -r` inside.
    pub kernel: String,
    /// Whether that kernel is the host's own.
    pub kernel_shared: bool,
    /// CapEff of the workload.
    pub cap_eff: String,
    /// Seccomp mode (0 = none, 2 = filter).
    pub seccomp: String,
    /// NoNewPrivs.
    pub no_new_privs: String,
    /// CPUs visible (`nproc`).
    pub cpus: String,
    /// Network interfaces visible.
    pub interfaces: String,
    /// MemTotal the workload sees.
    pub mem_total: String,
    /// Whether the probe ran (false: the reason is in `kernel`).
    pub ok: bool,
}

/// All measurements of one mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeResult {
    /// "container" or "vm".
    pub mode: String,
    /// The timed runs.
    pub samples: Vec<Sample>,
    /// Sizes.
    pub footprint: Footprint,
    /// Isolation as seen from inside.
    pub probe: Probe,
}

/// Runs the workload `runs` times in `mode`, then probes and sizes it.
pub fn measure_mode(
    mode: Mode,
    argv: &[String],
    spec: &WorkloadSpec,
    kernel: Option<&Path>,
    runs: u32,
    progress: bool,
) -> Result<ModeResult, BoxError> {
    let mut samples = Vec::new();
    for i in 0..runs {
        if progress {
            eprint!("\risol compare: {mode} run {}/{runs}   ", i + 1);
        }
        samples.push(timed_run(mode, argv)?);
    }
    if progress {
        eprint!("\risol compare: {mode} probing isolation      ");
    }
    let probe = probe(mode, argv);
    if progress {
        eprintln!("\risol compare: {mode} done                       ");
    }
    Ok(ModeResult {
        mode: mode.to_string(),
        samples,
        footprint: footprint(mode, spec, kernel),
        probe,
    })
}

fn isol_run(mode: Mode) -> Result<Command, BoxError> {
    let mut c = Command::new(std::env::current_exe()?);
    c.arg("run").arg("--mode").arg(mode.to_string());
    Ok(c)
}

/// Reads a pipe to its end, noting when the first byte came.
fn drain(
    mut r: impl Read + Send + 'static,
    first: Arc<Mutex<Option<Instant>>>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut f = first.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(Instant::now);
            drop(f);
            all.extend_from_slice(&buf[..n]);
        }
        all
    })
}

fn timed_run(mode: Mode, argv: &[String]) -> Result<Sample, BoxError> {
    let stats = tempfile_path("stats");
    let mut cmd = isol_run(mode)?;
    cmd.args(argv).env("ISOL_STATS_FILE", &stats);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let first = Arc::new(Mutex::new(None));
    let t0 = Instant::now();
    let mut child = cmd.spawn()?;
    let out = drain(child.stdout.take().ok_or("no stdout pipe")?, first.clone());
    let err = drain(child.stderr.take().ok_or("no stderr pipe")?, first.clone());
    let status = child.wait()?;
    let t_exit = t0.elapsed();
    let stdout = out.join().map_err(|_| "stdout reader panicked")?;
    let _ = err.join();
    let first = *first.lock().unwrap_or_else(|p| p.into_inner());
    let (own, kids) = read_stats(&stats);
    let _ = std::fs::remove_file(&stats);
    Ok(Sample {
        first_output_ms: first.map(|t| ms(t.duration_since(t0))),
        exit_ms: ms(t_exit),
        exit_code: status.code().unwrap_or(-1),
        isol_max_rss_kib: own,
        children_max_rss_kib: kids,
        stdout_digest: format!("{:016x}", fnv1a(&stdout)),
        stdout_bytes: stdout.len(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn tempfile_path(what: &str) -> std::path::PathBuf {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "isol-compare-{what}-{}-{nonce}.json",
        std::process::id()
    ))
}

fn read_stats(path: &Path) -> (i64, i64) {
    let v: serde_json::Value = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    (
        v["self_max_rss_kib"].as_i64().unwrap_or(0),
        v["children_max_rss_kib"].as_i64().unwrap_or(0),
    )
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const PROBE: &str = "echo kernel=$(uname -r); \
grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status | sed 's/:[[:space:]]*/=/'; \
echo cpus=$(nproc); echo interfaces=$(ls /sys/class/net | tr '\\n' ' '); \
echo mem_total=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2-)";

/// Runs the probe script in the workload's sandbox (same limits, default rootfs).
fn probe(mode: Mode, argv: &[String]) -> Probe {
    // Keep the resource flags of the workload, drop its rootfs and command.
    let mut keep = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => break,
            "--memory" | "--cpus" | "--pids" | "--kernel" | "--user" | "--hostname" => {
                keep.push(a.clone());
                keep.extend(it.next().cloned());
            }
            "--read-only" => keep.push(a.clone()),
            _ => {}
        }
    }
    let out = isol_run(mode).and_then(|mut c| {
        Ok(c.args(&keep)
            .args(["--", "sh", "-c", PROBE])
            .stdin(Stdio::null())
            .output()?)
    });
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            return Probe {
                kernel: format!(
                    "probe failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                ..Probe::default()
            }
        }
        Err(e) => {
            return Probe {
                kernel: format!("probe failed: {e}"),
                ..Probe::default()
            }
        }
    };
    let mut p = Probe {
        ok: true,
        ..Probe::default()
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k {
            "kernel" => p.kernel = v,
            "CapEff" => p.cap_eff = v,
            "Seccomp" => p.seccomp = v,
            "NoNewPrivs" => p.no_new_privs = v,
            "cpus" => p.cpus = v,
            "interfaces" => p.interfaces = v,
            "mem_total" => p.mem_total = v,
            _ => {}
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    p.kernel_shared = p.kernel == host.trim();
    p
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn footprint(mode: Mode, spec: &WorkloadSpec, kernel: Option<&Path>) -> Footprint {
    let rootfs_bytes = spec.rootfs.as_deref().map(dir_bytes).unwrap_or(0);
    match mode {
        Mode::Container => Footprint {
            rootfs_bytes,
            kernel_bytes: None,
            guest_ram_bytes: None,
        },
        Mode::Vm => {
            let kernel = isol_vmm::kernel::resolve_kernel(kernel).ok();
            let kernel_bytes = kernel
                .and_then(|k| std::fs::metadata(k.path).ok())
                .map(|m| m.len());
            // What the backend's plan gives the VM (the rootfs is served, not in guest RAM).
            let init_bytes = isol_vmm::backend::guest_init_path()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len());
            let ram = isol_vmm::backend::plan::planned_guest_ram(spec, init_bytes);
            Footprint {
                rootfs_bytes,
                kernel_bytes,
                guest_ram_bytes: Some(ram),
            }
        }
    }
}
