//! The VM for a spec, computed as plain data: guest RAM, vCPUs, kernel command line, the
//! init's config, and where the static guest init binary is.
//!
//! # Guest RAM and `--memory`
//! The workload's limit is enforced *inside* the guest, exactly: the init puts the workload
//! in a cgroup with `memory.max = --memory` and `memory.swap.max = 0`, so a workload over
//! it is OOM-killed (137), as in container mode. The VM itself gets more RAM than that, so
//! the kernel, the init and the unpacked initramfs have room of their own:
//!
//! `guest RAM = workload + BASE_OVERHEAD + 2 x initramfs` (rounded up to 2 MiB)
//!
//! where `workload` is `--memory` or [`DEFAULT_WORKLOAD_MEMORY`] when unlimited, and the
//! initramfs (the init and its config, a few MiB) counts twice because the kernel holds
//! the archive while it unpacks it into its tmpfs (the archive is freed afterwards). The
//! rootfs costs no guest RAM of its own: it is served over virtio-9p, and what the
//! workload writes over it lands in a tmpfs charged to the workload's cgroup, as container
//! mode's overlay is. Guest RAM is mapped lazily on the host: pages the guest never
//! touches cost nothing.

use std::path::{Path, PathBuf};

use isol_common::WorkloadSpec;

use crate::channel::protocol::{volume_tag, GuestConfig, Volume};

/// Kernel, page tables, slab, the init and its buffers (measured need plus margin).
pub const BASE_OVERHEAD: u64 = 96 << 20;
/// The workload's memory when the spec sets no limit.
pub const DEFAULT_WORKLOAD_MEMORY: u64 = 512 << 20;
pub use isol_common::spec::CPU_PERIOD_US;
/// Name of the guest init binary.
pub const GUEST_INIT_NAME: &str = "isol-guest-init";

/// Guest RAM in bytes for a workload limit and an initramfs size.
pub fn guest_ram(workload: Option<u64>, initramfs: u64) -> u64 {
    const ALIGN: u64 = 2 << 20;
    let raw = workload
        .unwrap_or(DEFAULT_WORKLOAD_MEMORY)
        .saturating_add(BASE_OVERHEAD)
        .saturating_add(initramfs.saturating_mul(2));
    raw.div_ceil(ALIGN).saturating_mul(ALIGN)
}

/// Bytes of cpio headers, names, padding and trailer around the init and its config
/// (seven entries; an upper bound, see [`crate::initramfs::write_initramfs`]).
pub const INITRAMFS_FRAMING: u64 = 4 << 10;

/// The guest RAM `prepare` gives a run of `spec` whose guest init has `init_bytes` (for
/// reports such as `isol compare`, which do not write the initramfs): the initramfs is
/// the init, its config and the cpio framing; the rootfs is served over 9P, not in it.
pub fn planned_guest_ram(spec: &WorkloadSpec, init_bytes: u64) -> u64 {
    let config = guest_config(spec, false).encode().len() as u64;
    let initramfs = init_bytes + config + INITRAMFS_FRAMING;
    guest_ram(spec.resources.memory, initramfs)
}

/// vCPUs for the spec: `ceil(cpus)`, 1 when unlimited.
pub fn vcpus(spec: &WorkloadSpec) -> u32 {
    spec.visible_cpus().unwrap_or(1).max(1)
}

/// cpu.max for a fractional `--cpus` (an integral count is already the vCPU count).
pub fn cpu_max(cpus: Option<f64>) -> Option<(u64, u64)> {
    let c = cpus?;
    if c.fract() == 0.0 {
        return None;
    }
    Some((isol_common::spec::cpu_quota_us(c), CPU_PERIOD_US))
}

/// The kernel command line.
pub fn cmdline(verbose: bool, extra: Option<&str>) -> String {
    let mut parts = vec![
        "console=ttyS0",
        "reboot=k",
        "panic=-1",
        "pci=off",
        "nomodule",
        "i8042.noaux",
        "i8042.nomux",
        "i8042.nopnp",
        "i8042.dumbkbd",
        "tsc=reliable",
        "no_timer_check",
        "rdinit=/init",
    ];
    if !verbose {
        parts.insert(1, "quiet");
    }
    let mut line = parts.join(" ");
    if let Some(e) = extra.filter(|e| !e.trim().is_empty()) {
        line.push(' ');
        line.push_str(e.trim());
    }
    line
}

/// The init's config for a spec (volume `N` is served over virtio-9p as [`volume_tag`]`(N)`).
pub fn guest_config(spec: &WorkloadSpec, debug: bool) -> GuestConfig {
    GuestConfig {
        args: spec.args.clone(),
        env: spec.effective_env(),
        cwd: spec.cwd.to_string_lossy().into_owned(),
        uid: spec.user.uid,
        gid: spec.user.gid,
        hostname: spec.hostname.clone(),
        read_only: spec.read_only,
        memory: spec.resources.memory,
        pids: spec.resources.pids,
        cpu_max: cpu_max(spec.resources.cpus),
        volumes: spec
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| Volume {
                tag: volume_tag(i),
                path: v.path.to_string_lossy().into_owned(),
                read_only: v.read_only,
            })
            .collect(),
        debug,
        seccomp: None,
        rlimits: spec
            .rlimits
            .iter()
            .map(|r| (r.resource, r.soft, r.hard))
            .collect(),
        oom_score_adj: spec.oom_score_adj,
    }
}

/// Where the guest init may be, in order: `$ISOL_GUEST_INIT`; beside the isol binary;
/// the static build's places relative to it (`<target>/x86_64-unknown-linux-gnu/
/// {release,debug}/`); the path baked in at build time (`ISOL_GUEST_INIT_PATH`).
pub fn guest_init_candidates(exe: Option<&Path>) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("ISOL_GUEST_INIT").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    if let Some(dir) = exe.and_then(Path::parent) {
        c.push(dir.join(GUEST_INIT_NAME));
        if let Some(target) = dir.parent() {
            for profile in ["release", "debug"] {
                c.push(
                    target
                        .join("x86_64-unknown-linux-gnu")
                        .join(profile)
                        .join(GUEST_INIT_NAME),
                );
            }
        }
    }
    if let Some(p) = option_env!("ISOL_GUEST_INIT_PATH") {
        c.push(PathBuf::from(p));
    }
    c
}

#[cfg(test)]
mod tests {
    use isol_common::Overrides;

    use super::*;

    fn spec(flags: &[(&str, &str)]) -> WorkloadSpec {
        let mut ov = Overrides {
            args: vec!["true".into()],
            ..Overrides::default()
        };
        for (k, v) in flags {
            match *k {
                "memory" => ov.memory = Some(v.to_string()),
                "cpus" => ov.cpus = Some(v.to_string()),
                "env" => ov.env.push(v.to_string()),
                _ => unreachable!(),
            }
        }
        WorkloadSpec::from_toml("", &ov).unwrap()
    }

    #[test]
    fn test_planned_guest_ram_matches_the_written_initramfs() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init");
        std::fs::write(&init, vec![0x7fu8; 3 << 20]).unwrap();
        let s = spec(&[("memory", "64M")]);
        let config = guest_config(&s, false).encode();
        let contents = crate::initramfs::Contents {
            init: &init,
            config: &config,
        };
        let written =
            crate::initramfs::write_initramfs(&dir.path().join("i.cpio"), &contents).unwrap();
        let planned: u64 = 3 << 20;
        let framing = written - planned - config.len() as u64;
        assert!(framing <= INITRAMFS_FRAMING, "{framing}");
        assert_eq!(
            planned_guest_ram(&s, planned),
            guest_ram(Some(64 << 20), written)
        );
    }

    #[test]
    fn test_guest_ram_adds_overhead_and_twice_the_initramfs() {
        assert_eq!(guest_ram(Some(64 << 20), 10 << 20), (64 + 96 + 20) << 20);
        assert_eq!(guest_ram(None, 0), DEFAULT_WORKLOAD_MEMORY + BASE_OVERHEAD);
        assert_eq!(guest_ram(Some(1), 1) % (2 << 20), 0);
        assert!(guest_ram(Some(u64::MAX), u64::MAX) > 0);
    }

    #[test]
    fn test_cpu_max_only_for_fractions() {
        assert_eq!(cpu_max(None), None);
        assert_eq!(cpu_max(Some(2.0)), None);
        assert_eq!(cpu_max(Some(0.5)), Some((50_000, 100_000)));
        assert_eq!(cpu_max(Some(1.25)), Some((125_000, 100_000)));
    }

    #[test]
    fn test_vcpus_ceil_of_cpus() {
        assert_eq!(vcpus(&spec(&[])), 1);
        assert_eq!(vcpus(&spec(&[("cpus", "2")])), 2);
        assert_eq!(vcpus(&spec(&[("cpus", "0.5")])), 1);
        assert_eq!(vcpus(&spec(&[("cpus", "1.5")])), 2);
    }

    #[test]
    fn test_guest_config_carries_exact_env_and_limits() {
        let s = spec(&[("memory", "64M"), ("env", "A=1")]);
        let c = guest_config(&s, false);
        assert_eq!(c.env, s.effective_env());
        assert_eq!(c.memory, Some(64 << 20));
        assert_eq!(c.args, vec!["true".to_string()]);
        assert_eq!(c.cwd, "/");
    }

    #[test]
    fn test_cmdline_quiet_unless_verbose() {
        assert!(cmdline(false, None).contains(" quiet "));
        assert!(!cmdline(true, None).contains("quiet"));
        assert!(cmdline(false, Some("loglevel=7")).ends_with("rdinit=/init loglevel=7"));
    }
}
