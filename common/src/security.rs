//! Security defaults that both modes apply to the workload, so that it sees the same
//! privileges as a container or as a process in the microVM: docker's default capability
//! set, and runc's masked and read-only /proc paths.

/// Capabilities the workload keeps (docker's default set), as (number, name).
/// Every other capability is dropped from the bounding, effective, permitted, inheritable
/// and ambient sets; `no_new_privs` is set.
pub const DEFAULT_CAPABILITIES: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// Paths under /proc and /sys hidden from the workload (runc's default `maskedPaths`):
/// a directory gets an empty read-only tmpfs over it, a file gets /dev/null bound over it.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths under /proc made read-only (runc's default `readonlyPaths`).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The capability mask (bit per capability) of [`DEFAULT_CAPABILITIES`].
pub fn default_capability_mask() -> u64 {
    DEFAULT_CAPABILITIES
        .iter()
        .fold(0, |m, (n, _)| m | (1u64 << n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_default_capability_mask_matches_docker() {
        // docker's default CapBnd as shown in /proc/self/status inside `docker run`.
        assert_eq!(default_capability_mask(), 0x0000_0000_a804_25fb);
    }
}
