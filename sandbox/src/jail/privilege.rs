//! Privilege drop of a jailed process: the workload's algorithm ([`privdrop::drop_to`]),
//! keeping the permitted set across setuid, with the kept mask effective and permitted
//! (inheritable and ambient empty) and in the bounding set, no_new_privs.
//!
//! Capabilities are per thread: call this while the process has one thread, so every
//! thread it starts later inherits the dropped credentials.

use super::JailError;
use crate::privdrop;
use crate::syscall::{CapSets, Syscall};

/// Who the jailed process becomes and what it keeps: the bounding set is `caps`, and
/// the same `caps` stay effective and permitted (also as a non-root uid).
pub type Identity = privdrop::Identity;

/// Drops privileges to `id` with the sandbox's one algorithm ([`privdrop::drop_to`]);
/// on failure names the operation that failed.
pub fn drop_privileges(sys: &dyn Syscall, id: &Identity) -> Result<(), JailError> {
    let sets = CapSets {
        effective: id.caps,
        permitted: id.caps,
        inheritable: 0,
    };
    privdrop::drop_to(sys, id, sets, true).map_err(|(what, errno)| JailError {
        what,
        path: Default::default(),
        errno,
    })
}

#[cfg(test)]
mod tests {
    use nix::errno::Errno;

    use super::*;
    use crate::syscall::fake::FakeSyscall;

    #[test]
    fn test_drop_privileges_all_caps_order() {
        let fake = FakeSyscall::default();
        let id = Identity {
            uid: 1000,
            gid: 1001,
            caps: 0,
        };
        drop_privileges(&fake, &id).unwrap();
        let log = fake.log();
        assert_eq!(log[0], "setgroups []");
        let drops = log.iter().filter(|l| l.starts_with("capbset_drop")).count();
        assert_eq!(drops, 64, "every capability leaves the bounding set");
        let tail: Vec<&str> = log[65..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "keepcaps",
                "setresgid 1001",
                "setresuid 1000",
                "capset eff=0x0 prm=0x0 inh=0x0",
                "ambient_clear",
                "no_new_privs"
            ]
        );
    }

    #[test]
    fn test_drop_privileges_keeps_only_the_mask() {
        let fake = FakeSyscall::default();
        let caps = (1 << 0) | (1 << 3);
        let id = Identity {
            uid: 7,
            gid: 7,
            caps,
        };
        drop_privileges(&fake, &id).unwrap();
        let log = fake.log();
        assert!(!log.contains(&"capbset_drop 0".to_string()));
        assert!(!log.contains(&"capbset_drop 3".to_string()));
        assert!(log.contains(&"capbset_drop 21".to_string()));
        assert!(log.contains(&"capset eff=0x9 prm=0x9 inh=0x0".to_string()));
    }

    #[test]
    fn test_drop_privileges_failure_names_the_step_and_stops() {
        let fake = FakeSyscall {
            fail_on: Some("setresuid".into()),
            ..FakeSyscall::default()
        };
        let id = Identity {
            uid: 7,
            gid: 7,
            caps: 0,
        };
        let e = drop_privileges(&fake, &id).unwrap_err();
        assert_eq!(e.what, "setresuid");
        assert_eq!(e.errno, Errno::EPERM);
        assert!(!fake.log().iter().any(|l| l.starts_with("capset")));
    }
}
