//! isol's nftables table (`table ip isol`), written as nft scripts (plain text, unit
//! tested) and loaded with `nft -f -`. The table is created with the bridge and deleted
//! with it; runs only add and delete map elements, so a run's rules are removed by key,
//! without rule handles, and two runs can never publish the same host port (`create
//! element` fails on an existing key).
//!
//! - `postrouting`: masquerade what leaves the subnet, and what reaches the bridge from
//!   the host's 127.0.0.0/8 (a published port reached through 127.0.0.1: the bridge has
//!   `route_localnet` on, and the workload sees the gateway as the peer);
//! - `prerouting` (packets from elsewhere) and `output` (the host's own connections):
//!   DNAT of published ports, by `(host address, port)` first, then by port for ports
//!   published on every local address (`fib daddr type local`, 127.0.0.1 included).

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use isol_common::spec::{Protocol, Publish, Subnet};

/// The table's name (family `ip`).
pub const TABLE: &str = "isol";

/// The table, replaced whole (add + delete + create in one transaction).
pub fn table_script(subnet: Subnet, bridge: &str) -> String {
    let mut chains = String::new();
    for (name, hook, prio) in [
        ("prerouting", "prerouting", -100),
        ("output", "output", -100),
    ] {
        chains += &format!(
            "  chain {name} {{\n    type nat hook {hook} priority {prio}; policy accept;\n"
        );
        for p in ["tcp", "udp"] {
            chains += &format!("    dnat ip to ip daddr . {p} dport map @{p}_ip\n");
            chains += &format!("    fib daddr type local dnat ip to {p} dport map @{p}_any\n");
        }
        chains += "  }\n";
    }
    let mut maps = String::new();
    for p in ["tcp", "udp"] {
        maps += &format!(
            "  map {p}_ip {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}\n"
        );
        maps += &format!("  map {p}_any {{ type inet_service : ipv4_addr . inet_service; }}\n");
    }
    // route_localnet lets 127.0.0.0/8 be routed to and from the bridge (for published
    // ports reached through 127.0.0.1, DNATed in `output`); nothing arriving *from* the
    // bridge may be addressed to it (CVE-2020-8558), before conntrack and NAT.
    chains += &format!(
        "  chain guard {{\n    type filter hook prerouting priority -300; policy accept;\n    \
         iifname \"{bridge}\" ip daddr 127.0.0.0/8 drop\n  }}\n"
    );
    format!(
        "add table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n{maps}{chains}  \
         chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    \
         ip saddr {subnet} ip daddr != {subnet} masquerade\n    \
         ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade\n  }}\n}}\n"
    )
}

/// The map element of one published port for the workload at `addr`: (map, key, value).
fn element(p: &Publish, addr: Ipv4Addr) -> (String, String, String) {
    let proto = match p.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let value = format!("{addr} . {}", p.port);
    match p.host_ip {
        Some(ip) => (
            format!("{proto}_ip"),
            format!("{ip} . {}", p.host_port),
            value,
        ),
        None => (format!("{proto}_any"), p.host_port.to_string(), value),
    }
}

/// Adds the elements of a run's published ports (fails if a host port is taken).
pub fn publish_script(ports: &[Publish], addr: Ipv4Addr) -> String {
    ports
        .iter()
        .map(|p| {
            let (map, key, value) = element(p, addr);
            format!("create element ip {TABLE} {map} {{ {key} : {value} }}\n")
        })
        .collect()
}

/// Deletes the elements of a run's published ports, one script per port (one that is
/// already gone must not keep the others).
pub fn unpublish_scripts(ports: &[Publish], addr: Ipv4Addr) -> Vec<String> {
    ports
        .iter()
        .map(|p| {
            let (map, key, _) = element(p, addr);
            format!("delete element ip {TABLE} {map} {{ {key} }}\n")
        })
        .collect()
}

/// Deletes the table.
pub fn delete_script() -> String {
    format!("delete table ip {TABLE}\n")
}

/// `nft -f -` failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// No `nft` binary.
    #[error("Cannot run nft (nftables): {source}; install it (apt-get install nftables)")]
    Spawn {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// nft refused the script.
    #[error("nft refused `{script}`: {stderr}")]
    Refused {
        /// The script (first line).
        script: String,
        /// nft's message.
        stderr: String,
    },
}

/// Runs `nft -f -` with `script`.
pub fn run(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NftError::Spawn { source })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NftError::Spawn { source })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(NftError::Refused {
        script: script.lines().next().unwrap_or("").to_string(),
        stderr: stderr.lines().next().unwrap_or("").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use isol_common::spec::DEFAULT_SUBNET;

    fn publish(host_ip: Option<Ipv4Addr>, protocol: Protocol) -> Publish {
        Publish {
            host_ip,
            host_port: 8080,
            port: 80,
            protocol,
        }
    }

    #[test]
    fn test_table_script_masquerades_subnet_and_localhost() {
        let s = table_script(DEFAULT_SUBNET, "isol0");
        assert!(s.starts_with("add table ip isol\ndelete table ip isol\n"));
        assert!(s.contains("ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 masquerade"));
        assert!(s.contains("ip saddr 127.0.0.0/8 oifname \"isol0\" masquerade"));
        assert_eq!(s.matches("fib daddr type local").count(), 4);
        assert!(s.contains("iifname \"isol0\" ip daddr 127.0.0.0/8 drop"));
    }

    #[test]
    fn test_publish_and_unpublish_elements() {
        let addr = Ipv4Addr::new(10, 88, 0, 2);
        let ports = [
            publish(None, Protocol::Tcp),
            publish(Some(Ipv4Addr::LOCALHOST), Protocol::Udp),
        ];
        assert_eq!(
            publish_script(&ports, addr),
            "create element ip isol tcp_any { 8080 : 10.88.0.2 . 80 }\n\
             create element ip isol udp_ip { 127.0.0.1 . 8080 : 10.88.0.2 . 80 }\n"
        );
        assert_eq!(
            unpublish_scripts(&ports, addr),
            [
                "delete element ip isol tcp_any { 8080 }\n",
                "delete element ip isol udp_ip { 127.0.0.1 . 8080 }\n"
            ]
        );
    }
}
