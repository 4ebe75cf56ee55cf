//! The workload's network, the same in both modes: a private network namespace (the
//! container's own, or the microVM, which has no NIC) with only loopback, brought up
//! (IFF_UP | IFF_RUNNING). Failing to bring it up is a setup error in both modes; only a
//! kernel without networking at all (no `lo`, no AF_INET) has nothing to bring up.
//!
//! With `--network bridge` the workload also gets `eth0` on isol's bridge: described
//! once on the host ([`config::InterfaceConfig`], [`config::EtcFiles`]), applied inside
//! the workload's namespace by [`config::configure`]; the host side (bridge, leases,
//! nftables, forwarding) is [`host`], the same for both modes; a backend adds only its
//! own link to the bridge (a veth pair in container mode).

pub mod config;
pub mod host;
pub mod lease;
pub mod netlink;
pub mod nft;
pub mod routes;

use crate::syscall::Syscall;

/// Whether a failure to bring loopback up means "this kernel has no networking".
pub fn no_network(errno: i32) -> bool {
    errno == libc::ENODEV || errno == libc::EAFNOSUPPORT
}

/// Brings loopback up; a kernel without networking is not an error.
pub fn loopback_up(sys: &dyn Syscall) -> nix::Result<()> {
    match sys.loopback_up() {
        Err(e) if no_network(e as i32) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use nix::errno::Errno;

    use super::*;
    use crate::syscall::fake::FakeSyscall;

    #[test]
    fn test_loopback_failure_is_an_error() {
        assert!(loopback_up(&FakeSyscall::default()).is_ok());
        let fake = FakeSyscall {
            fail_on: Some("loopback_up".into()),
            ..Default::default()
        };
        assert_eq!(loopback_up(&fake), Err(Errno::EPERM));
    }
}
