//! Privilege drop of a jailed process, in the order the kernel requires: supplementary
//! groups and the capability bounding set while still privileged, then ids (keeping the
//! permitted set across setuid), then the capability sets themselves (effective,
//! permitted, inheritable = the kept mask), ambient cleared, no_new_privs.
//!
//! Capabilities are per thread: call this while the process has one thread, so every
//! thread it starts later inherits the dropped credentials.

use nix::errno::Errno;

use super::JailError;
use crate::syscall::Syscall;

/// Highest capability number tried in the bounding set; the kernel answers EINVAL past
/// its own last one (cap_last_cap), which ends the loop.
const MAX_CAP: u32 = 63;

/// Who the jailed process becomes and what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Capabilities kept (bit per capability), in every set including the bounding set.
    pub caps: u64,
}

fn fail(what: &'static str) -> impl FnOnce(Errno) -> JailError {
    move |errno| JailError {
        what,
        path: Default::default(),
        errno,
    }
}

/// Drops privileges to `id`; on failure names the operation that failed.
pub fn drop_privileges(sys: &dyn Syscall, id: &Identity) -> Result<(), JailError> {
    sys.clear_groups().map_err(fail("setgroups([])"))?;
    for cap in 0..=MAX_CAP {
        if id.caps & (1u64 << cap) != 0 {
            continue;
        }
        match sys.drop_bounding_cap(cap) {
            Ok(()) => {}
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(fail("drop capabilities from the bounding set")(e)),
        }
    }
    sys.keep_caps()
        .map_err(fail("keep capabilities across setuid"))?;
    sys.set_gid(id.gid).map_err(fail("setresgid"))?;
    sys.set_uid(id.uid).map_err(fail("setresuid"))?;
    sys.set_caps(id.caps).map_err(fail("capset"))?;
    sys.clear_ambient_caps()
        .map_err(fail("clear ambient capabilities"))?;
    sys.set_no_new_privs().map_err(fail("set no_new_privs"))
}

#[cfg(test)]
mod tests {
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
                "capset 0x0",
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
        assert!(log.contains(&"capset 0x9".to_string()));
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
