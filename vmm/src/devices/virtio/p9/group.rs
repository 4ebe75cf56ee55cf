//! What the 9P servers of one VM share: one lock that serialises their requests, and one
//! budget of open files.
//!
//! - The lock makes "resolve a parent under the root, then act on a name in it" atomic
//!   with respect to everything the guest can do, through any of its shares: the guest
//!   cannot rename the parent out of one share through another (nested or overlapping
//!   roots) between the two steps. It also bounds the fds held for the length of one
//!   request (a handful) for all servers together.
//! - The budget counts the files fids hold open (Tlopen, Tlcreate) across all servers of
//!   the VM; beyond it the guest gets `EMFILE`, well before the VMM itself runs out of fds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, Resource};

/// Fds kept out of the budget for the rest of the VMM (KVM, vCPUs, eventfds, stdio, the
/// servers' roots and the few fds one request holds), at least.
pub const MIN_RESERVE: usize = 256;
/// The smallest budget, whatever the limit says.
pub const MIN_BUDGET: usize = 16;

/// The lock and fd budget shared by all 9P servers of one VM.
#[derive(Debug)]
pub struct ServerGroup {
    lock: Mutex<()>,
    budget: usize,
    open: AtomicUsize,
}

/// One open file counted against a [`ServerGroup`]'s budget, released on drop.
#[derive(Debug)]
pub struct FdSlot {
    group: Arc<ServerGroup>,
}

impl Drop for FdSlot {
    fn drop(&mut self) {
        self.group.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ServerGroup {
    /// A group whose servers may hold at most `budget` open files together.
    pub fn new(budget: usize) -> Arc<ServerGroup> {
        Arc::new(ServerGroup {
            lock: Mutex::new(()),
            budget,
            open: AtomicUsize::new(0),
        })
    }

    /// A group for one VM, its budget derived from `RLIMIT_NOFILE`: the hard limit (the
    /// VMM raises its soft limit to it) less a quarter, or less [`MIN_RESERVE`] if more.
    pub fn for_vm() -> Arc<ServerGroup> {
        let limit = getrlimit(Resource::RLIMIT_NOFILE)
            .map(|(_, hard)| usize::try_from(hard).unwrap_or(usize::MAX))
            .unwrap_or(1024);
        ServerGroup::new(budget_for(limit))
    }

    /// The most open files the group's servers may hold.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Takes the group's lock for one request (a panicked holder does not wedge the VM).
    pub fn serialise(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one slot of the budget, or `EMFILE` if all are taken.
    pub fn take_slot(self: &Arc<Self>) -> Result<FdSlot, Errno> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.budget).then_some(n + 1)
            })
            .map_err(|_| Errno::EMFILE)?;
        Ok(FdSlot {
            group: Arc::clone(self),
        })
    }
}

/// The budget for an fd limit of `limit`.
pub fn budget_for(limit: usize) -> usize {
    let reserve = (limit / 4).max(MIN_RESERVE);
    limit.saturating_sub(reserve).max(MIN_BUDGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_budget_keeps_a_reserve_below_the_limit() {
        assert_eq!(budget_for(20000), 15000);
        assert_eq!(budget_for(1024), 768);
        assert_eq!(budget_for(300), MIN_BUDGET.max(300 - MIN_RESERVE));
        assert_eq!(budget_for(0), MIN_BUDGET);
        let vm = ServerGroup::for_vm();
        assert!(vm.budget() >= MIN_BUDGET);
    }

    #[test]
    fn test_slots_are_bounded_and_released_on_drop() {
        let g = ServerGroup::new(2);
        let a = g.take_slot().unwrap();
        let _b = g.take_slot().unwrap();
        assert_eq!(g.take_slot().err(), Some(Errno::EMFILE));
        drop(a);
        assert!(g.take_slot().is_ok());
    }
}
