//! Container mode's own part of a bridge network: the veth pair. Everything else (the
//! bridge, lease, nftables, /etc files, the interface config the init applies) is the
//! sandbox's, the same for VM mode (`isol_sandbox::net`).
//!
//! Once the init exists (in its new network namespace) and before it goes on, isol
//! creates the pair: host end `isolh<addr>` on the bridge, up; the other end
//! `isolp<addr>` made directly in the init's namespace; the init renames it eth0 and
//! configures it. The pair dies with the namespace; isol also deletes the
//! host end when the run ends (the lease names it, so `isol gc` finds it after a kill).

use isol_sandbox::net::host::{Attachment, NetError, BRIDGE};
use isol_sandbox::net::netlink::{link_index, Netlink};
use nix::errno::Errno;

fn nl_err(what: String) -> impl FnOnce(Errno) -> NetError {
    move |errno| NetError::Netlink { what, errno }
}

/// Creates the run's veth pair, the workload's end in the network namespace of `pid`,
/// and plugs the host end into the bridge.
pub fn plug(att: &Attachment, pid: u32) -> Result<(), NetError> {
    let mut nl = Netlink::open().map_err(nl_err("open a netlink socket".into()))?;
    let host = att.host_link.as_str();
    nl.add_veth(host, &att.iface.link, att.iface.mtu, pid)
        .map_err(nl_err(format!("create the veth pair {host}")))?;
    let bridge = link_index(BRIDGE).map_err(nl_err(format!("find {BRIDGE}")))?;
    let index = link_index(host).map_err(nl_err(format!("find {host}")))?;
    nl.set_master(index, bridge)
        .map_err(nl_err(format!("plug {host} into {BRIDGE}")))?;
    nl.set_up(index).map_err(nl_err(format!("bring {host} up")))
}
