//! A small synchronous rtnetlink client (rust-netlink's `netlink-packet-route` messages
//! over a `netlink-sys` socket): the few link, address and route operations isol makes,
//! on the host (bridge, veth pairs) and inside the workload's network namespace (eth0).
//! Every request asks for an ACK, so each call returns the kernel's own answer.

use std::net::Ipv4Addr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

/// A connected rtnetlink socket of the current network namespace.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The index of the link `name` in the current namespace.
pub fn link_index(name: &str) -> nix::Result<u32> {
    nix::net::if_::if_nametoindex(name)
}

impl Netlink {
    /// Opens a socket in the caller's current network namespace.
    pub fn open() -> nix::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| io_errno(&e))?;
        socket.bind_auto().map_err(|e| io_errno(&e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| io_errno(&e))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and waits for its ACK (or the kernel's error).
    fn request(&mut self, msg: RouteNetlinkMessage, create: bool) -> nix::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        if create {
            header.flags |= NLM_F_CREATE | NLM_F_EXCL;
        }
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| io_errno(&e))?;
        let mut rx = vec![0u8; 16384];
        loop {
            let n = self
                .socket
                .recv(&mut &mut rx[..], 0)
                .map_err(|e| io_errno(&e))?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|_| Errno::EBADMSG)?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = reply.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(Errno::from_raw(-code.get())),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// Creates a bridge.
    pub fn add_bridge(&mut self, name: &str, mtu: u32) -> nix::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.request(RouteNetlinkMessage::NewLink(m), true)
    }

    /// Creates a veth pair `name` <-> `peer`, both with `mtu`, both down; `peer` is
    /// created directly in the network namespace of process `peer_ns_pid` (cheaper than
    /// moving it there: a move waits for an RCU grace period).
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        mtu: u32,
        peer_ns_pid: u32,
    ) -> nix::Result<()> {
        let mut p = LinkMessage::default();
        p.attributes = vec![
            LinkAttribute::IfName(peer.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::NetNsPid(peer_ns_pid),
        ];
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
            ]),
        ];
        self.request(RouteNetlinkMessage::NewLink(m), true)
    }

    fn set_link(&mut self, index: u32, attrs: Vec<LinkAttribute>, up: bool) -> nix::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if up {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        }
        m.attributes = attrs;
        self.request(RouteNetlinkMessage::SetLink(m), false)
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> nix::Result<()> {
        self.set_link(index, Vec::new(), true)
    }

    /// Renames a (down) link.
    pub fn rename(&mut self, index: u32, name: &str) -> nix::Result<()> {
        self.set_link(index, vec![LinkAttribute::IfName(name.to_string())], false)
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> nix::Result<()> {
        self.set_link(index, vec![LinkAttribute::Mtu(mtu)], false)
    }

    /// Makes `index` a port of the bridge `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> nix::Result<()> {
        self.set_link(index, vec![LinkAttribute::Controller(master)], false)
    }

    /// Deletes a link (a veth's peer goes with it).
    pub fn del_link(&mut self, index: u32) -> nix::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), false)
    }

    /// Adds `addr/prefix` to a link (with its broadcast address).
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> nix::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        let brd = Ipv4Addr::from(u32::from(addr) | host_bits);
        m.attributes = vec![
            AddressAttribute::Local(addr.into()),
            AddressAttribute::Address(addr.into()),
            AddressAttribute::Broadcast(brd),
        ];
        self.request(RouteNetlinkMessage::NewAddress(m), true)
    }

    /// Adds the default route through `gateway`, out of link `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> nix::Result<()> {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: AddressFamily::Inet,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        m.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.request(RouteNetlinkMessage::NewRoute(m), true)
    }
}
