//! The workload's resource limits and oom_score_adj, set explicitly in both modes: every
//! limit the spec names (NOFILE 1024:1024 by default), and every other limit as isol's
//! own ([`complete`], read on the host, so VM mode's guest gets the very values a
//! container would inherit: runc's rule, that what the config does not name is the
//! runtime's own, made the same in both modes). And the check isol makes before anything
//! starts: a hard limit can only be raised above isol's own, and oom_score_adj only be
//! lowered below isol's own, with CAP_SYS_RESOURCE, so such a spec is refused up front
//! (exit 125, naming the limit) instead of half-starting. The rule is isol's, on the host
//! side, for both modes: the guest init could do either (it is root in the guest), but a
//! spec must mean the same in both modes.

use isol_common::spec::{Rlimit, RLIMIT_NAMES, RLIM_INFINITY};
use nix::errno::Errno;

use crate::syscall::Syscall;

/// CAP_SYS_RESOURCE (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;

/// A limit of the spec that this isol cannot give.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    /// A hard limit above isol's own.
    #[error(
        "{name}: hard limit {wanted} is above isol's own ({own}) and raising it needs \
         CAP_SYS_RESOURCE, which isol does not have; ask for at most {own} \
         (--ulimit {short}=SOFT:{own}) or raise isol's own limit first"
    )]
    Hard {
        /// The OCI name.
        name: &'static str,
        /// The hard limit asked for.
        wanted: String,
        /// isol's own hard limit.
        own: String,
        /// The `--ulimit` name (`nofile`).
        short: String,
    },
    /// An oom_score_adj below isol's own.
    #[error(
        "oom_score_adj {wanted} is below isol's own ({own}) and lowering it needs \
         CAP_SYS_RESOURCE, which isol does not have; ask for at least {own} \
         (--oom-score-adj {own})"
    )]
    OomScoreAdj {
        /// The value asked for.
        wanted: i32,
        /// isol's own.
        own: i32,
    },
}

fn show(v: u64) -> String {
    if v == RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// Whether the calling process has CAP_SYS_RESOURCE in its effective set.
fn has_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The calling process's hard limit of `resource`.
fn own_hard(resource: u32) -> Option<u64> {
    own_limit(resource).map(|(_, hard)| hard)
}

/// The calling process's (soft, hard) limit of `resource`.
fn own_limit(resource: u32) -> Option<(u64, u64)> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on ourselves with no new value only writes `old`, a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            libc::c_ulong::from(resource),
            std::ptr::null::<libc::rlimit64>(),
            &mut old as *mut libc::rlimit64,
        )
    };
    (rc == 0).then_some((old.rlim_cur, old.rlim_max))
}

/// `limits` with every other resource Linux has added as isol's own, ordered by resource
/// number: the full set the workload gets, in both modes.
pub fn complete(limits: &[Rlimit]) -> Vec<Rlimit> {
    let mut out: Vec<Rlimit> = RLIMIT_NAMES
        .iter()
        .filter_map(
            |&(_, resource)| match limits.iter().find(|r| r.resource == resource) {
                Some(r) => Some(*r),
                None => own_limit(resource).map(|(soft, hard)| Rlimit {
                    resource,
                    soft,
                    hard,
                }),
            },
        )
        .collect();
    // Anything named that the table lacks (none today) is kept too.
    out.extend(
        limits
            .iter()
            .filter(|r| !RLIMIT_NAMES.iter().any(|(_, n)| *n == r.resource)),
    );
    out.sort_by_key(|r| r.resource);
    out
}

/// isol's own oom_score_adj (0 when it cannot be read).
fn own_oom_score_adj() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Refuses limits and an oom_score_adj the workload could not be given (both modes apply
/// the same rule, so a spec that runs in one mode runs in the other).
pub fn check_caller(limits: &[Rlimit], oom_score_adj: i32) -> Result<(), RlimitError> {
    check_limits(limits)?;
    let own = own_oom_score_adj();
    if oom_score_adj < own && !has_sys_resource() {
        return Err(RlimitError::OomScoreAdj {
            wanted: oom_score_adj,
            own,
        });
    }
    Ok(())
}

fn check_limits(limits: &[Rlimit]) -> Result<(), RlimitError> {
    let too_high = limits
        .iter()
        .filter_map(|r| own_hard(r.resource).map(|own| (r, own)))
        .find(|(r, own)| r.hard > *own);
    match too_high {
        Some((r, own)) if !has_sys_resource() => Err(RlimitError::Hard {
            name: r.name(),
            wanted: show(r.hard),
            own: show(own),
            short: r.name().trim_start_matches("RLIMIT_").to_ascii_lowercase(),
        }),
        _ => Ok(()),
    }
}

/// Sets every limit, then oom_score_adj; on failure names what failed.
pub fn apply(
    sys: &dyn Syscall,
    limits: &[Rlimit],
    oom_score_adj: i32,
) -> Result<(), (String, Errno)> {
    for r in limits {
        sys.set_rlimit(r.resource, r.soft, r.hard).map_err(|e| {
            let what = format!("set {} to {}:{}", r.name(), show(r.soft), show(r.hard));
            (what, e)
        })?;
    }
    sys.set_oom_score_adj(oom_score_adj)
        .map_err(|e| (format!("set oom_score_adj to {oom_score_adj}"), e))
}

#[cfg(test)]
mod tests {
    use isol_common::spec::DEFAULT_RLIMITS;

    use super::*;
    use crate::syscall::fake::FakeSyscall;

    #[test]
    fn test_apply_sets_limits_then_oom() {
        let fake = FakeSyscall::default();
        apply(&fake, DEFAULT_RLIMITS, -3).unwrap();
        assert_eq!(fake.log(), ["setrlimit 7 1024 1024", "oom_score_adj -3"]);
    }

    #[test]
    fn test_apply_failure_names_the_limit() {
        let fake = FakeSyscall {
            fail_on: Some("setrlimit".into()),
            ..Default::default()
        };
        let (what, e) = apply(&fake, DEFAULT_RLIMITS, 0).unwrap_err();
        assert_eq!(what, "set RLIMIT_NOFILE to 1024:1024");
        assert_eq!(e, Errno::EPERM);
    }

    #[test]
    fn test_complete_keeps_the_named_and_adds_isols_own_for_the_rest() {
        let full = complete(DEFAULT_RLIMITS);
        assert_eq!(full.len(), RLIMIT_NAMES.len());
        let nofile = full.iter().find(|r| r.resource == 7).unwrap();
        assert_eq!((nofile.soft, nofile.hard), (1024, 1024));
        for r in full.iter().filter(|r| r.resource != 7) {
            assert_eq!(
                Some((r.soft, r.hard)),
                own_limit(r.resource),
                "{}",
                r.name()
            );
        }
        let order: Vec<u32> = full.iter().map(|r| r.resource).collect();
        assert_eq!(order, (0..16).collect::<Vec<u32>>());
        // Its own limits are never a raise: check_caller accepts the completed set.
        check_caller(&full, own_oom_score_adj()).unwrap();
    }

    #[test]
    fn test_check_caller_accepts_own_limits_and_names_a_raise() {
        let own = own_hard(7).unwrap();
        let same = Rlimit {
            resource: 7,
            soft: 0,
            hard: own,
        };
        let adj = own_oom_score_adj();
        check_caller(&[same], adj).unwrap();
        if !has_sys_resource() {
            let e = check_caller(&[], adj - 1).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("oom_score_adj {} is below", adj - 1)),
                "{e}"
            );
        }
        if own != RLIM_INFINITY && !has_sys_resource() {
            let more = Rlimit {
                resource: 7,
                soft: 0,
                hard: own + 1,
            };
            let e = check_caller(&[more], adj).unwrap_err().to_string();
            assert!(e.starts_with("RLIMIT_NOFILE: hard limit "), "{e}");
            assert!(e.contains("--ulimit nofile=SOFT:"), "{e}");
        }
    }
}
