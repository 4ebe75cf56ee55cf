//! The `[network]` section and the network flags: `--network none|bridge`,
//! `--publish [HOST_IP:]HOST_PORT:PORT[/tcp|/udp]`, `--dns IP`, `--add-host NAME:IP`,
//! `--subnet CIDR`. `none` (the default) is loopback only; `bridge` gives the workload an
//! `eth0` on isol's host bridge, with outbound NAT and the published ports. IPv4 only:
//! with `bridge` the workload has no IPv6 beyond loopback.

use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;

use super::{invalid, Mode, Overrides, SpecError};

/// How the workload is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// A private network namespace with only loopback, up (the default).
    #[default]
    None,
    /// `eth0` on isol's bridge: an address from the subnet, a default route through the
    /// bridge, outbound masquerade and published ports.
    Bridge,
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A published port: traffic to the host's `HOST_IP:HOST_PORT` (any local address when
/// `host_ip` is `None`) reaches the workload's `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// The host address it is published on (`None`: every local address, 127.0.0.1 too).
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The workload's port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl Publish {
    /// Whether two publications claim the same host port: same protocol and port, and
    /// the same address or either on every address.
    pub fn clashes(&self, other: &Publish) -> bool {
        self.host_port == other.host_port
            && self.protocol == other.protocol
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

/// An IPv4 subnet (`addr` is its network address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 8..=29.
    pub prefix: u8,
}

impl Subnet {
    /// The netmask as an integer.
    pub fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `ip` lies in the subnet.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// The `n`-th address of the subnet (network address + n).
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }

    /// Number of addresses in the subnet.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The gateway: the first address (the bridge's).
    pub fn gateway(self) -> Ipv4Addr {
        self.nth(1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// podman's default: private (RFC 1918), rarely routed by hosts or cloud VPCs, and the
/// one users of podman already know. isol checks the host's routes at start and refuses
/// a subnet that collides with one (choose another with `--subnet`).
pub const DEFAULT_SUBNET: Subnet = Subnet {
    addr: Ipv4Addr::new(10, 88, 0, 0),
    prefix: 16,
};

/// The validated network of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// none or bridge.
    pub mode: NetworkMode,
    /// The bridge's subnet.
    pub subnet: Subnet,
    /// Published ports.
    pub publish: Vec<Publish>,
    /// Name servers for /etc/resolv.conf (empty: the host's, without 127.x stubs).
    pub dns: Vec<Ipv4Addr>,
    /// Extra /etc/hosts entries.
    pub add_hosts: Vec<(String, IpAddr)>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            mode: NetworkMode::None,
            subnet: DEFAULT_SUBNET,
            publish: Vec::new(),
            dns: Vec::new(),
            add_hosts: Vec::new(),
        }
    }
}

/// `[network]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkFile {
    mode: Option<String>,
    subnet: Option<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    add_hosts: Vec<String>,
}

/// Resolves `[network]` and the flags (flags replace the file's mode and subnet and add
/// to its lists).
pub(super) fn resolve(
    file: Option<NetworkFile>,
    ov: &Overrides,
    mode: Mode,
) -> Result<Network, SpecError> {
    let f = file.unwrap_or_default();
    let (field, value) = match (&ov.network, &f.mode) {
        (Some(m), _) => ("--network", Some(m.as_str())),
        (None, Some(m)) => ("network.mode", Some(m.as_str())),
        (None, None) => ("--network", None),
    };
    let net_mode = match value {
        None | Some("none") => NetworkMode::None,
        Some("bridge") => NetworkMode::Bridge,
        Some(other) => {
            return Err(invalid(
                field,
                other,
                "is not a network mode",
                "use none (loopback only) or bridge",
            ))
        }
    };
    let mut net = Network {
        mode: net_mode,
        ..Network::default()
    };
    match (&ov.subnet, &f.subnet) {
        (Some(s), _) => net.subnet = parse_subnet("--subnet", s)?,
        (None, Some(s)) => net.subnet = parse_subnet("network.subnet", s)?,
        (None, None) => {}
    }
    let lists = [
        ("network.publish", &f.publish, "--publish", &ov.publish),
        ("network.dns", &f.dns, "--dns", &ov.dns),
        (
            "network.add_hosts",
            &f.add_hosts,
            "--add-host",
            &ov.add_hosts,
        ),
    ];
    for (i, (ffield, fvals, flag, ovals)) in lists.into_iter().enumerate() {
        let all = fvals
            .iter()
            .map(|v| (ffield, v))
            .chain(ovals.iter().map(|v| (flag, v)));
        for (field, v) in all {
            match i {
                0 => net.publish.push(parse_publish(field, v)?),
                1 => net.dns.push(parse_ipv4(field, v)?),
                _ => net.add_hosts.push(parse_add_host(field, v)?),
            }
        }
    }
    check(&net, mode, ov.subnet.is_some() || f.subnet.is_some())?;
    Ok(net)
}

fn check(net: &Network, mode: Mode, subnet_given: bool) -> Result<(), SpecError> {
    if net.mode == NetworkMode::None {
        let extra = [
            ("--publish", !net.publish.is_empty()),
            ("--dns", !net.dns.is_empty()),
            ("--add-host", !net.add_hosts.is_empty()),
            ("--subnet", subnet_given),
        ];
        if let Some((flag, _)) = extra.iter().find(|(_, given)| *given) {
            return Err(invalid(
                flag,
                "",
                "needs a network",
                "add --network bridge (with --network none the workload has loopback only)",
            ));
        }
        return Ok(());
    }
    if mode == Mode::Vm {
        return Err(invalid(
            "--network",
            "bridge",
            "is not yet supported in VM mode",
            "use --mode container for a bridged network, or --network none",
        ));
    }
    for (i, p) in net.publish.iter().enumerate() {
        let clash = net.publish[..i].iter().any(|q| q.clashes(p));
        if clash {
            return Err(invalid(
                "--publish",
                format!("{}/{}", p.host_port, p.protocol.as_str()),
                "is published twice",
                "publish each host port once",
            ));
        }
    }
    Ok(())
}

fn parse_ipv4(field: &str, s: &str) -> Result<Ipv4Addr, SpecError> {
    s.parse()
        .map_err(|_| invalid(field, s, "is not an IPv4 address", "e.g. 192.0.2.53"))
}

fn parse_port(field: &str, whole: &str, s: &str) -> Result<u16, SpecError> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(invalid(
            field,
            whole,
            "has a bad port",
            "ports are 1..65535: [HOST_IP:]HOST_PORT:PORT[/tcp|/udp], e.g. 127.0.0.1:8080:80",
        )),
    }
}

/// `[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]`.
pub fn parse_publish(field: &str, s: &str) -> Result<Publish, SpecError> {
    let (ports, protocol) = match s.rsplit_once('/') {
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some((p, "udp")) => (p, Protocol::Udp),
        Some(_) => {
            return Err(invalid(
                field,
                s,
                "has a bad protocol",
                "end it with /tcp or /udp (default tcp)",
            ))
        }
        None => (s, Protocol::Tcp),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host_port, port) = match parts.as_slice() {
        [h, p] => (None, *h, *p),
        [ip, h, p] => (Some(parse_ipv4(field, ip)?), *h, *p),
        _ => {
            return Err(invalid(
                field,
                s,
                "is not [HOST_IP:]HOST_PORT:PORT[/tcp|/udp]",
                "e.g. --publish 8080:80 or --publish 127.0.0.1:5353:53/udp",
            ))
        }
    };
    Ok(Publish {
        host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
        host_port: parse_port(field, s, host_port)?,
        port: parse_port(field, s, port)?,
        protocol,
    })
}

/// `NAME:IP` (IPv4 or IPv6).
fn parse_add_host(field: &str, s: &str) -> Result<(String, IpAddr), SpecError> {
    let bad = |problem| invalid(field, s, problem, "use NAME:IP, e.g. db.local:192.0.2.7");
    let (name, ip) = s.split_once(':').ok_or_else(|| bad("is not NAME:IP"))?;
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !name_ok {
        return Err(bad("has a bad host name"));
    }
    let ip = ip.parse().map_err(|_| bad("has a bad IP address"))?;
    Ok((name.to_string(), ip))
}

/// `A.B.C.D/N`, N in 8..=29, host bits zero.
pub fn parse_subnet(field: &str, s: &str) -> Result<Subnet, SpecError> {
    let hint = "use an IPv4 network like 10.88.0.0/16 (prefix 8..29, host bits zero)";
    let bad = |problem| invalid(field, s, problem, hint);
    let (a, p) = s.split_once('/').ok_or_else(|| bad("is not A.B.C.D/N"))?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad("has a bad address"))?;
    let prefix: u8 = p.parse().map_err(|_| bad("has a bad prefix"))?;
    if !(8..=29).contains(&prefix) {
        return Err(bad("has a prefix outside 8..29"));
    }
    let subnet = Subnet { addr, prefix };
    if u32::from(addr) & !subnet.mask() != 0 {
        return Err(bad("has host bits set"));
    }
    if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() {
        return Err(bad("is not a usable unicast network"));
    }
    Ok(subnet)
}

#[cfg(test)]
mod tests;
