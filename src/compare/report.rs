//! The comparison table and its JSON form.

use std::fmt::Write;

use isol_common::WorkloadSpec;
use serde::{Deserialize, Serialize};

use super::measure::{ModeResult, Sample};
use super::VmVenue;

/// Everything `isol compare` measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// The workload's argv.
    pub command: Vec<String>,
    /// Runs per mode.
    pub runs: u32,
    /// Where the VM column was measured.
    #[serde(skip_deserializing, default = "direct")]
    pub vm_venue: Option<VmVenue>,
    /// One entry per measured mode.
    pub modes: Vec<ModeResult>,
    /// Whether every run of every mode gave the same exit code and stdout bytes.
    pub outputs_agree: bool,
}

fn direct() -> Option<VmVenue> {
    None
}

/// Median and spread of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// Median, min and max; `None` for an empty series.
pub fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

fn agree(modes: &[ModeResult]) -> bool {
    let mut all = modes
        .iter()
        .flat_map(|m| m.samples.iter())
        .map(|s| (s.exit_code, s.stdout_digest.clone()));
    match all.next() {
        None => true,
        Some(first) => all.all(|x| x == first),
    }
}

impl Report {
    /// Builds the report.
    pub fn new(spec: &WorkloadSpec, runs: u32, modes: Vec<ModeResult>, venue: VmVenue) -> Report {
        let outputs_agree = agree(&modes);
        Report {
            command: spec.args.clone(),
            runs,
            vm_venue: Some(venue),
            modes,
            outputs_agree,
        }
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "isol compare: {}  ({} runs per mode)",
            shell_words(&self.command),
            self.runs
        );
        let _ = writeln!(t, "{:<38} {:>26} {:>26}", "", "container", "vm");
        let col = |m: &str| self.modes.iter().find(|r| r.mode == m);
        let (c, v) = (col("container"), col("vm"));
        let lat = |r: Option<&ModeResult>, f: fn(&Sample) -> Option<f64>| -> String {
            r.and_then(|r| stats(&r.samples.iter().filter_map(f).collect::<Vec<_>>()))
                .map(|s| format!("{:.1} ({:.1}..{:.1})", s.median, s.min, s.max))
                .unwrap_or_else(|| "-".into())
        };
        let row = |t: &mut String, name: &str, a: String, b: String| {
            let _ = writeln!(t, "{name:<38} {a:>26} {b:>26}");
        };
        row(
            &mut t,
            "start to first output, ms (min..max)",
            lat(c, |s| s.first_output_ms),
            lat(v, |s| s.first_output_ms),
        );
        row(
            &mut t,
            "start to exit, ms (min..max)",
            lat(c, |s| Some(s.exit_ms)),
            lat(v, |s| Some(s.exit_ms)),
        );
        let mib = |r: Option<&ModeResult>, f: fn(&Sample) -> i64| -> String {
            r.and_then(|r| {
                stats(
                    &r.samples
                        .iter()
                        .map(|s| f(s) as f64 / 1024.0)
                        .collect::<Vec<_>>(),
                )
            })
            .map(|s| format!("{:.1}", s.median))
            .unwrap_or_else(|| "-".into())
        };
        row(
            &mut t,
            "peak RSS isol process, MiB (median)",
            mib(c, |s| s.isol_max_rss_kib),
            mib(v, |s| s.isol_max_rss_kib),
        );
        row(
            &mut t,
            "  of which guest RAM touched",
            "n/a".into(),
            v.map(|_| "included".to_string()).unwrap_or("-".into()),
        );
        row(
            &mut t,
            "peak RSS workload processes, MiB",
            mib(c, |s| s.children_max_rss_kib),
            v.map(|_| "inside guest".to_string()).unwrap_or("-".into()),
        );
        let size = |b: Option<u64>| {
            b.map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                .unwrap_or_else(|| "-".into())
        };
        row(
            &mut t,
            "rootfs on disk",
            size(c.map(|r| r.footprint.rootfs_bytes)),
            size(v.map(|r| r.footprint.rootfs_bytes)),
        );
        row(
            &mut t,
            "guest kernel on disk",
            "host's own".into(),
            size(v.and_then(|r| r.footprint.kernel_bytes)),
        );
        row(
            &mut t,
            "guest RAM",
            "host's (shared)".into(),
            size(v.and_then(|r| r.footprint.guest_ram_bytes)),
        );
        let codes = |r: Option<&ModeResult>| {
            r.map(|r| {
                let mut c: Vec<i32> = r.samples.iter().map(|s| s.exit_code).collect();
                c.dedup();
                format!("{c:?}")
            })
            .unwrap_or_else(|| "-".into())
        };
        row(&mut t, "exit codes", codes(c), codes(v));
        let agree = if self.outputs_agree { "yes" } else { "NO" };
        let _ = writeln!(t, "{:<38} {agree:>26}", "exit status and stdout agree");
        let _ = writeln!(t, "isolation, as seen from inside:");
        let p = |r: Option<&ModeResult>, f: fn(&super::measure::Probe) -> String| {
            r.map(|r| {
                if r.probe.ok {
                    f(&r.probe)
                } else {
                    "probe failed".into()
                }
            })
            .unwrap_or_else(|| "-".into())
        };
        row(
            &mut t,
            "  kernel",
            p(c, |p| p.kernel.clone()),
            p(v, |p| p.kernel.clone()),
        );
        row(
            &mut t,
            "  kernel shared with host",
            p(c, |p| yes(p.kernel_shared)),
            p(v, |p| yes(p.kernel_shared)),
        );
        row(
            &mut t,
            "  namespaces",
            "pid mnt uts ipc net cgroup".into(),
            v.map(|_| "own kernel + pid cgroup".to_string())
                .unwrap_or("-".into()),
        );
        row(
            &mut t,
            "  capabilities (CapEff)",
            p(c, |p| p.cap_eff.clone()),
            p(v, |p| p.cap_eff.clone()),
        );
        row(
            &mut t,
            "  seccomp / no_new_privs",
            p(c, |p| format!("{} / {}", p.seccomp, p.no_new_privs)),
            p(v, |p| format!("{} / {}", p.seccomp, p.no_new_privs)),
        );
        row(
            &mut t,
            "  CPUs visible",
            p(c, |p| p.cpus.clone()),
            p(v, |p| p.cpus.clone()),
        );
        row(
            &mut t,
            "  MemTotal visible",
            p(c, |p| p.mem_total.clone()),
            p(v, |p| p.mem_total.clone()),
        );
        row(
            &mut t,
            "  network interfaces",
            p(c, |p| p.interfaces.clone()),
            p(v, |p| p.interfaces.clone()),
        );
        match &self.vm_venue {
            Some(VmVenue::NestedLab) => {
                let _ = writeln!(
                    t,
                    "note: the vm column was measured inside the nested lab; {}.",
                    super::PVM_NOTE
                );
            }
            Some(VmVenue::NotMeasured { reason }) => {
                let _ = writeln!(t, "note: vm column not measured: {reason}.");
            }
            _ => {}
        }
        t
    }
}

/// The command as a shell would need it typed: arguments with spaces or quotes quoted.
fn shell_words(args: &[String]) -> String {
    let quote = |a: &String| {
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
        {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    args.iter().map(quote).collect::<Vec<_>>().join(" ")
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_shell_words_quotes_only_what_needs_it() {
        let args = ["sh", "-c", "echo hi", "it's"].map(String::from);
        assert_eq!(shell_words(&args), "sh -c 'echo hi' 'it'\\''s'");
    }

    #[test]
    fn test_stats_median_odd_even() {
        assert_eq!(
            stats(&[3.0, 1.0, 2.0]),
            Some(Stats {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(stats(&[]), None);
    }

    fn sample(code: i32, digest: &str) -> Sample {
        Sample {
            first_output_ms: Some(1.0),
            exit_ms: 2.0,
            exit_code: code,
            isol_max_rss_kib: 1024,
            children_max_rss_kib: 512,
            stdout_digest: digest.into(),
            stdout_bytes: 3,
        }
    }

    fn mode(name: &str, samples: Vec<Sample>) -> ModeResult {
        ModeResult {
            mode: name.into(),
            samples,
            footprint: super::super::measure::Footprint {
                rootfs_bytes: 1,
                kernel_bytes: None,
                guest_ram_bytes: None,
            },
            probe: Default::default(),
        }
    }

    #[test]
    fn test_agree_detects_differing_stdout() {
        assert!(agree(&[
            mode("container", vec![sample(0, "a")]),
            mode("vm", vec![sample(0, "a")])
        ]));
        assert!(!agree(&[
            mode("container", vec![sample(0, "a")]),
            mode("vm", vec![sample(0, "b")])
        ]));
        assert!(!agree(&[mode(
            "container",
            vec![sample(0, "a"), sample(1, "a")]
        )]));
    }
}
