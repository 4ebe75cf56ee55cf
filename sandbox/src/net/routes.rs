//! What the host's routing table says: whether a subnet collides with a route the host
//! already has, and the MTU of the uplink (the default route's interface), read from
//! the caller's network namespace (/proc/net/route and SIOCGIFMTU, never /sys, which may
//! show another namespace).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use isol_common::spec::Subnet;
use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// One IPv4 route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Interface.
    pub iface: String,
    /// Destination network.
    pub dest: Ipv4Addr,
    /// Its mask.
    pub mask: Ipv4Addr,
}

impl Route {
    fn prefix(&self) -> u32 {
        u32::from(self.mask).count_ones()
    }
}

fn hex_addr(s: &str) -> Option<Ipv4Addr> {
    // /proc/net/route prints the network-order address as a native integer.
    u32::from_str_radix(s, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

/// Parses /proc/net/route.
pub fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Route {
                iface: f.first()?.to_string(),
                dest: hex_addr(f.get(1)?)?,
                mask: hex_addr(f.get(7)?)?,
            })
        })
        .collect()
}

/// The first route (not the default route, not on `own_bridge`) overlapping `subnet`.
pub fn collision<'a>(routes: &'a [Route], subnet: Subnet, own_bridge: &str) -> Option<&'a Route> {
    routes.iter().find(|r| {
        if r.iface == own_bridge || r.prefix() == 0 {
            return false;
        }
        let mask = u32::from(r.mask) & subnet.mask();
        u32::from(r.dest) & mask == u32::from(subnet.addr) & mask
    })
}

/// The interface of the default route, if any.
pub fn default_iface(routes: &[Route]) -> Option<&str> {
    routes
        .iter()
        .find(|r| r.prefix() == 0)
        .map(|r| r.iface.as_str())
}

#[repr(C)]
struct IfreqMtu {
    name: [u8; libc::IFNAMSIZ],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

/// The MTU of interface `name` (SIOCGIFMTU in the current namespace).
pub fn mtu_of(name: &str) -> nix::Result<u32> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(Errno::EINVAL);
    }
    let sock: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req = IfreqMtu {
        name: [0; libc::IFNAMSIZ],
        mtu: 0,
        _pad: [0; 20],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `req` is a live, writable buffer of ifreq's size (40 bytes) with a
    // NUL-terminated name; SIOCGIFMTU writes only its int member after the name.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    Errno::result(rc)?;
    u32::try_from(req.mtu).map_err(|_| Errno::EINVAL)
}

/// The MTU for the bridge and the workloads: the uplink's (so nothing bigger than the
/// path out is sent), 1500 without a default route, never below IPv4's 576.
pub fn uplink_mtu(routes: &[Route]) -> u32 {
    default_iface(routes)
        .and_then(|i| mtu_of(i).ok())
        .unwrap_or(1500)
        .clamp(576, 65535)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isol_common::spec::DEFAULT_SUBNET;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
wg0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn test_parse_routes_and_default_iface() {
        let r = parse_routes(ROUTES);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].dest, Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(r[1].mask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(default_iface(&r), Some("eth0"));
    }

    #[test]
    fn test_collision_found_ignoring_default_and_own_bridge() {
        let r = parse_routes(ROUTES);
        assert_eq!(collision(&r, DEFAULT_SUBNET, "isol0").unwrap().iface, "wg0");
        assert!(collision(&r, DEFAULT_SUBNET, "wg0").is_none());
        let other = Subnet {
            addr: Ipv4Addr::new(10, 89, 0, 0),
            prefix: 16,
        };
        assert!(collision(&r, other, "isol0").is_none());
        // A wider subnet containing a host route collides too.
        let wide = Subnet {
            addr: Ipv4Addr::new(192, 0, 0, 0),
            prefix: 8,
        };
        assert_eq!(collision(&r, wide, "isol0").unwrap().iface, "eth0");
    }

    #[test]
    fn test_mtu_of_loopback() {
        assert!(mtu_of("lo").unwrap() >= 1500);
        assert_eq!(mtu_of("no-such-if0"), Err(Errno::ENODEV));
    }
}
