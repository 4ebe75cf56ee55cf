//! The host side of a bridge network, the same for both modes: the bridge `isol0` with
//! the gateway address, isol's nft table, forwarding, the run's lease, published ports
//! and /etc files. The backend adds only its own link (container: a veth pair; VM mode:
//! a tap) named [`Attachment::host_link`] as a port of the bridge.
//!
//! The bridge, the table and `net.ipv4.ip_forward = 1` exist while at least one run
//! holds a lease: the first run creates them, the last one to end (or `isol gc`) removes
//! them and puts back the `ip_forward` value it found. The bridge has `route_localnet`
//! on (only the bridge), so a port published on 127.0.0.1 can be DNATed to it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use isol_common::spec::{Network, Publish, Subnet};
use nix::errno::Errno;

use super::config::{EtcFiles, EtcInputs, InterfaceConfig};
use super::lease::{self, Lease, LeaseInfo};
use super::netlink::{link_index, Netlink};
use super::{nft, routes};

/// The bridge's name.
pub const BRIDGE: &str = "isol0";

/// A bridge network cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A file of the network's directory.
    #[error("Cannot {what} {}", path.display())]
    Io {
        /// What was done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The subnet overlaps a route of the host.
    #[error("Subnet {subnet} collides with the host's route {dest}/{prefix} on {iface}; choose another with --subnet (or [network] subnet), e.g. 10.89.0.0/16")]
    Collision {
        /// The subnet.
        subnet: Subnet,
        /// The route's destination.
        dest: Ipv4Addr,
        /// Its prefix.
        prefix: u32,
        /// Its interface.
        iface: String,
    },
    /// The bridge exists with another subnet.
    #[error("The bridge {BRIDGE} is in use with subnet {current} by other runs; ask for the same subnet (--subnet {current}) or wait until they end")]
    SubnetInUse {
        /// The bridge's subnet.
        current: Subnet,
    },
    /// A live run has published the host port.
    #[error("Host port {port}/{protocol} is already published by run {run}; publish another host port or end that run")]
    PortTaken {
        /// The port.
        port: u16,
        /// tcp or udp.
        protocol: &'static str,
        /// The run that has it.
        run: String,
    },
    /// No address left.
    #[error("No free address left in {subnet}; end some runs, or use a larger --subnet")]
    Full {
        /// The subnet.
        subnet: Subnet,
    },
    /// A netlink operation.
    #[error("Cannot {what}: {errno}")]
    Netlink {
        /// What.
        what: String,
        /// The kernel's answer.
        errno: Errno,
    },
    /// nft.
    #[error("Cannot {what}")]
    Nft {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: nft::NftError,
    },
}

fn nl_err(what: impl Into<String>) -> impl FnOnce(Errno) -> NetError {
    let what = what.into();
    move |errno| NetError::Netlink { what, errno }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetError {
    let path = path.to_path_buf();
    move |source| NetError::Io { what, path, source }
}

/// A run's place on the bridge network; released by [`Attachment::release`] or on drop.
#[derive(Debug)]
pub struct Attachment {
    dir: PathBuf,
    lease: Option<Lease>,
    publish: Vec<Publish>,
    /// The workload's interface.
    pub iface: InterfaceConfig,
    /// The host-side link the backend creates and plugs into [`BRIDGE`].
    pub host_link: String,
    /// The run's /etc/resolv.conf, hosts and hostname on the host (view sources).
    pub files: Vec<PathBuf>,
}

/// Reads /proc/net/route of the current namespace.
fn host_routes() -> Vec<routes::Route> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| routes::parse_routes(&t))
        .unwrap_or_default()
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn write_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(io_err("write", Path::new(path)))
}

/// The `state` file: `subnet A.B.C.D/N` and `ip_forward V`.
fn read_state(dir: &Path) -> Option<(Subnet, String)> {
    let text = std::fs::read_to_string(dir.join("state")).ok()?;
    let mut subnet = None;
    let mut fwd = "0".to_string();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("subnet", s)) => subnet = isol_common::spec::network::parse_subnet("", s).ok(),
            Some(("ip_forward", v)) => fwd = v.trim().to_string(),
            _ => {}
        }
    }
    Some((subnet?, fwd))
}

/// Creates the bridge, its address, the nft table and forwarding.
fn create_bridge(dir: &Path, subnet: Subnet, mtu: u32) -> Result<(), NetError> {
    if let Some(r) = routes::collision(&host_routes(), subnet, BRIDGE) {
        return Err(NetError::Collision {
            subnet,
            dest: r.dest,
            prefix: u32::from(r.mask).count_ones(),
            iface: r.iface.clone(),
        });
    }
    let mut nl = Netlink::open().map_err(nl_err("open a netlink socket"))?;
    nl.add_bridge(BRIDGE, mtu)
        .map_err(nl_err(format!("create the bridge {BRIDGE}")))?;
    let fwd = std::fs::read_to_string(IP_FORWARD).unwrap_or_else(|_| "0".into());
    let state = format!("subnet {subnet}\nip_forward {}\n", fwd.trim());
    let state_path = dir.join("state");
    std::fs::write(&state_path, state).map_err(io_err("write", &state_path))?;
    let index = link_index(BRIDGE).map_err(nl_err(format!("find {BRIDGE}")))?;
    nl.add_address(index, subnet.gateway(), subnet.prefix)
        .map_err(nl_err(format!("add {} to {BRIDGE}", subnet.gateway())))?;
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet"),
        "1",
    )?;
    nl.set_up(index)
        .map_err(nl_err(format!("bring {BRIDGE} up")))?;
    nft::run(&nft::table_script(subnet, BRIDGE)).map_err(|source| NetError::Nft {
        what: "create isol's nftables table",
        source,
    })?;
    write_sysctl(IP_FORWARD, "1")
}

/// Removes the bridge, the table and the state; puts ip_forward back. Best effort:
/// returns what could not be removed.
fn teardown(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let state = read_state(dir);
    if let Ok(index) = link_index(BRIDGE) {
        if let Err(e) = Netlink::open().and_then(|mut nl| nl.del_link(index)) {
            problems.push(format!("cannot delete {BRIDGE}: {e}"));
        }
    }
    // The table may be gone already (a failed start): ignore that case.
    let _ = nft::run(&nft::delete_script());
    if let Some((_, fwd)) = state {
        if let Err(e) = write_sysctl(IP_FORWARD, &fwd) {
            problems.push(e.to_string());
        }
    }
    for sub in ["state", "leases", "files"] {
        let p = dir.join(sub);
        let r = if sub == "state" {
            std::fs::remove_file(&p)
        } else {
            std::fs::remove_dir_all(&p)
        };
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                problems.push(format!("cannot remove {}: {e}", p.display()));
            }
            _ => {}
        }
    }
    problems
}

/// Removes what one (ended or dead) run left: its host link, nft elements, files, lease.
fn remove_run(dir: &Path, addr: Ipv4Addr, info: &LeaseInfo) -> Vec<String> {
    let mut problems = Vec::new();
    if let Ok(index) = link_index(&info.link) {
        if let Err(e) = Netlink::open().and_then(|mut nl| nl.del_link(index)) {
            if e != Errno::ENODEV {
                problems.push(format!("cannot delete {}: {e}", info.link));
            }
        }
    }
    for script in nft::unpublish_scripts(&info.publish, addr) {
        // An element already gone (or the table) is fine.
        let _ = nft::run(&script);
    }
    let files = dir.join("files").join(addr.to_string());
    if let Err(e) = std::fs::remove_dir_all(&files) {
        if e.kind() != std::io::ErrorKind::NotFound {
            problems.push(format!("cannot remove {}: {e}", files.display()));
        }
    }
    let lease = lease::lease_path(dir, addr);
    if let Err(e) = std::fs::remove_file(&lease) {
        problems.push(format!("cannot remove {}: {e}", lease.display()));
    }
    problems
}

/// Cleans dead runs' leases and, with none left, the bridge. Lock held. One line each.
fn collect(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for (addr, info) in lease::stale(dir) {
        let problems = remove_run(dir, addr, &info);
        lines.push(format!(
            "network lease {addr} of dead run {} ({}){}",
            info.run,
            info.link,
            if problems.is_empty() {
                String::new()
            } else {
                format!(": {}", problems.join(", "))
            }
        ));
    }
    if lease::leased(dir).is_empty() && (link_index(BRIDGE).is_ok() || dir.join("state").exists()) {
        let problems = teardown(dir);
        lines.push(format!(
            "bridge {BRIDGE} and nft table ip {}{}",
            nft::TABLE,
            if problems.is_empty() {
                String::new()
            } else {
                format!(": {}", problems.join(", "))
            }
        ));
    }
    lines
}

/// `isol gc`: removes what dead runs left on this network namespace's bridge network.
pub fn gc() -> Result<Vec<String>, NetError> {
    let dir = lease::net_dir();
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let _lock = lease::lock(&dir).map_err(io_err("lock", &dir.join("lock")))?;
    Ok(collect(&dir))
}

/// Refuses a host port a live run has published (lock held, dead runs collected).
fn check_ports(dir: &Path, publish: &[Publish]) -> Result<(), NetError> {
    match lease::port_holder(dir, publish) {
        Some((p, run)) => Err(NetError::PortTaken {
            port: p.host_port,
            protocol: p.protocol.as_str(),
            run,
        }),
        None => Ok(()),
    }
}

/// What a run asks of the network.
#[derive(Debug, Clone, Copy)]
pub struct AttachRequest<'a> {
    /// The spec's network.
    pub network: &'a Network,
    /// The workload's hostname.
    pub hostname: &'a str,
    /// The run's id (for `isol gc`'s messages).
    pub run: &'a str,
}

/// Joins the bridge network: bridge, lease, published ports, /etc files.
pub fn attach(req: &AttachRequest) -> Result<Attachment, NetError> {
    let dir = lease::net_dir();
    let _lock = lease::lock(&dir).map_err(io_err("lock", &dir.join("lock")))?;
    collect(&dir);
    let subnet = req.network.subnet;
    let mtu = routes::uplink_mtu(&host_routes());
    match read_state(&dir) {
        Some((current, _)) if link_index(BRIDGE).is_ok() => {
            if current != subnet {
                return Err(NetError::SubnetInUse { current });
            }
        }
        _ => {
            teardown(&dir);
            if let Err(e) = create_bridge(&dir, subnet, mtu) {
                teardown(&dir);
                return Err(e);
            }
        }
    }
    let mut att = Attachment {
        dir: dir.clone(),
        lease: None,
        publish: Vec::new(),
        iface: InterfaceConfig {
            link: String::new(),
            address: Ipv4Addr::UNSPECIFIED,
            prefix: subnet.prefix,
            gateway: subnet.gateway(),
            mtu,
        },
        host_link: String::new(),
        files: Vec::new(),
    };
    check_ports(&dir, &req.network.publish)?;
    let info = LeaseInfo {
        run: req.run.to_string(),
        link: String::new(),
        publish: req.network.publish.clone(),
    };
    let leases = dir.join("leases");
    let lease = lease::allocate(&dir, subnet, &info)
        .map_err(io_err("write a lease in", &leases))?
        .ok_or(NetError::Full { subnet })?;
    let addr = lease.addr;
    att.iface.address = addr;
    att.iface.link = lease::peer_link_name(addr);
    att.host_link = lease::host_link_name(addr);
    att.lease = Some(lease);
    // From here on, dropping `att` (on any error) releases everything made so far.
    nft::run(&nft::publish_script(&req.network.publish, addr)).map_err(|source| NetError::Nft {
        what: "publish the ports (is a host port already published by another run?)",
        source,
    })?;
    att.publish.clone_from(&req.network.publish);
    let files_dir = dir.join("files").join(addr.to_string());
    std::fs::create_dir_all(&files_dir).map_err(io_err("create", &files_dir))?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = EtcFiles::new(&EtcInputs {
        hostname: req.hostname,
        address: Some(addr),
        dns: &req.network.dns,
        host_resolv: &host_resolv,
        add_hosts: &req.network.add_hosts,
    });
    att.files = files
        .write_to(&files_dir)
        .map_err(io_err("write the /etc files in", &files_dir))?;
    Ok(att)
}

impl Attachment {
    /// Releases the run's link, ports, files and lease, and the bridge if it was the
    /// last run. Returns what could not be removed (`isol gc` retries).
    pub fn release(&mut self) -> Vec<String> {
        let Some(lease) = self.lease.take() else {
            return Vec::new();
        };
        let lock = match lease::lock(&self.dir) {
            Ok(l) => l,
            Err(e) => return vec![format!("cannot lock {}: {e}", self.dir.display())],
        };
        let info = LeaseInfo {
            run: String::new(),
            link: self.host_link.clone(),
            publish: std::mem::take(&mut self.publish),
        };
        let mut problems = remove_run(&self.dir, lease.addr, &info);
        drop(lease);
        if lease::leased(&self.dir).is_empty() {
            problems.extend(teardown(&self.dir));
        }
        drop(lock);
        problems
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
