//! The namespaces of a container: pid, mount, uts, ipc, net and cgroup, created by the
//! clone of the container's init (pid needs a new process anyway). When the run has
//! cgroups, the cgroup namespace is unshared only after isol moved the init into them
//! (rootfs `Step::JoinCgroups`), so that its root is the run's own cgroup. Inside, the init sets the hostname and brings loopback up (the
//! only interface of the new network namespace, so there is no route out).

use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::syscall::Syscall;

/// Flags of the clone that creates the container's init. With `cgroups_to_join`, the
/// cgroup namespace waits until the parent has moved the init into its cgroups.
pub fn clone_flags(cgroups_to_join: bool) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET;
    if !cgroups_to_join {
        f |= CloneFlags::CLONE_NEWCGROUP;
    }
    f
}

/// Runs first in the init: hostname and loopback.
pub fn setup(sys: &dyn Syscall, hostname: &str) -> Result<(), (&'static str, Errno)> {
    sys.sethostname(hostname)
        .map_err(|e| ("set the hostname", e))?;
    isol_sandbox::net::loopback_up(sys).map_err(|e| ("bring the loopback interface up", e))
}

/// Runs in the init once isol has moved it into the run's cgroups: a new cgroup
/// namespace rooted at them.
pub fn join_cgroup_ns(sys: &dyn Syscall) -> nix::Result<()> {
    sys.unshare(CloneFlags::CLONE_NEWCGROUP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::FakeSyscall;

    #[test]
    fn test_clone_flags_defer_cgroup_ns_when_joining() {
        assert!(!clone_flags(true).contains(CloneFlags::CLONE_NEWCGROUP));
        assert!(clone_flags(false).contains(CloneFlags::CLONE_NEWCGROUP));
        for f in [clone_flags(true), clone_flags(false)] {
            assert!(f.contains(
                CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS
            ));
            assert!(!f.contains(CloneFlags::CLONE_NEWUSER));
        }
    }

    #[test]
    fn test_setup_then_join() {
        let fake = FakeSyscall::default();
        setup(&fake, "box").unwrap();
        join_cgroup_ns(&fake).unwrap();
        assert_eq!(
            fake.log(),
            [
                "sethostname box",
                "loopback_up",
                "unshare CloneFlags(CLONE_NEWCGROUP)"
            ]
        );
    }
}
