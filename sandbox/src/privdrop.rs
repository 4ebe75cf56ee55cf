//! Privilege drop of the workload, one algorithm for both modes, in the order the kernel
//! requires: supplementary groups and the capability bounding set while still
//! privileged, then gid and uid, then all three capability sets set explicitly with
//! capset(2), the ambient set cleared, no_new_privs.
//!
//! What the workload keeps is docker's: the bounding set is
//! [`isol_common::security::DEFAULT_CAPABILITIES`]; uid 0 also has them effective and
//! permitted, any other uid has none (as `docker run --user N`); the inheritable and
//! ambient sets are always empty, so nothing is handed on across an execve beyond what
//! file capabilities and uid 0 give (docker 20.10+, CVE-2022-24769).

use nix::errno::Errno;

use crate::syscall::{CapSets, Syscall};

/// Highest capability number this code tries to drop from the bounding set; the kernel
/// answers EINVAL past its own last one (cap_last_cap), which ends the loop.
const MAX_CAP: u32 = 63;

/// Who the workload runs as and what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id (supplementary groups: none).
    pub gid: u32,
    /// The bounding set (bit per capability).
    pub caps: u64,
}

impl Identity {
    /// The capability sets the workload ends with.
    pub fn cap_sets(&self) -> CapSets {
        let held = if self.uid == 0 { self.caps } else { 0 };
        CapSets {
            effective: held,
            permitted: held,
            inheritable: 0,
        }
    }
}

/// Drops the workload's privileges to `id`; on failure names the operation that failed.
pub fn drop_privileges(sys: &dyn Syscall, id: &Identity) -> Result<(), (&'static str, Errno)> {
    drop_to(sys, id, id.cap_sets(), false)
}

/// The one privilege-drop algorithm (the workload's above, and the VMM jail's): groups
/// and the bounding set (`id.caps`) while still privileged, then gid and uid (keeping
/// the permitted set across setuid when `keep_across_setuid`, which a process that keeps
/// capabilities as a non-root uid needs), then `sets` with capset(2), the ambient set
/// cleared, no_new_privs.
pub fn drop_to(
    sys: &dyn Syscall,
    id: &Identity,
    sets: CapSets,
    keep_across_setuid: bool,
) -> Result<(), (&'static str, Errno)> {
    sys.clear_groups().map_err(|e| ("setgroups([])", e))?;
    for cap in 0..=MAX_CAP {
        if id.caps & (1u64 << cap) != 0 {
            continue;
        }
        match sys.drop_bounding_cap(cap) {
            Ok(()) => {}
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(("drop capabilities from the bounding set", e)),
        }
    }
    if keep_across_setuid {
        sys.keep_caps()
            .map_err(|e| ("keep capabilities across setuid", e))?;
    }
    sys.set_gid(id.gid).map_err(|e| ("setresgid", e))?;
    sys.set_uid(id.uid).map_err(|e| ("setresuid", e))?;
    sys.set_caps(sets).map_err(|e| ("capset", e))?;
    sys.clear_ambient_caps()
        .map_err(|e| ("clear ambient capabilities", e))?;
    sys.set_no_new_privs().map_err(|e| ("set no_new_privs", e))
}

#[cfg(test)]
mod tests {
    use isol_common::security::default_capability_mask;

    use super::*;
    use crate::syscall::fake::FakeSyscall;

    fn id(uid: u32) -> Identity {
        Identity {
            uid,
            gid: 7,
            caps: default_capability_mask(),
        }
    }

    #[test]
    fn test_drop_privileges_order_and_kept_mask() {
        let fake = FakeSyscall::default();
        drop_privileges(&fake, &id(0)).unwrap();
        let log = fake.log();
        assert_eq!(log[0], "setgroups []");
        let dropped: Vec<u32> = log
            .iter()
            .filter_map(|l| l.strip_prefix("capbset_drop "))
            .map(|n| n.parse().unwrap())
            .collect();
        // Dropped = every capability not in docker's set, up to 63 (the fake never says EINVAL).
        assert!(dropped.contains(&21), "CAP_SYS_ADMIN dropped");
        assert!(dropped.contains(&2), "CAP_DAC_READ_SEARCH dropped");
        for (n, _) in isol_common::security::DEFAULT_CAPABILITIES {
            assert!(!dropped.contains(n), "kept cap {n} was dropped");
        }
        let tail: Vec<&str> = log[log.len() - 5..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "setresgid 7",
                "setresuid 0",
                "capset eff=0xa80425fb prm=0xa80425fb inh=0x0",
                "ambient_clear",
                "no_new_privs"
            ]
        );
    }

    #[test]
    fn test_non_root_keeps_bounding_set_only() {
        let fake = FakeSyscall::default();
        drop_privileges(&fake, &id(1000)).unwrap();
        assert!(fake
            .log()
            .contains(&"capset eff=0x0 prm=0x0 inh=0x0".to_string()));
    }

    #[test]
    fn test_drop_privileges_failure_names_step() {
        let fake = FakeSyscall {
            fail_on: Some("setresuid".into()),
            ..Default::default()
        };
        let (what, errno) = drop_privileges(&fake, &id(0)).unwrap_err();
        assert_eq!(what, "setresuid");
        assert_eq!(errno, Errno::EPERM);
        assert!(!fake.log().iter().any(|l| l.starts_with("capset")));
    }
}
