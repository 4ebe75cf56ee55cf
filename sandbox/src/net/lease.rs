//! Address leases of the bridge network, in `<run_dir>/net/` (`$ISOL_RUN_DIR/net`, by
//! default `/run/isol/net`):
//!
//! - `lock`: flock'ed (exclusive) around every change below; kept.
//! - `state`: the bridge's subnet and the `net.ipv4.ip_forward` value found before isol
//!   turned it on; exists while the bridge does.
//! - `leases/<IP>`: one per run, flock'ed by its isol for the whole run (the fd is
//!   inherited, close-on-exec, by the container's init and the VMM, so the lock is held
//!   until every process of the run is gone). A lease whose lock can be taken belongs to
//!   a dead run: its link, nft elements and files are removed ([`stale`]). It lists the
//!   run, its host link and its published ports.
//! - `files/<IP>/`: the run's /etc/resolv.conf, hosts and hostname.
//!
//! `leases/` and `files/` are removed with the bridge when the last run ends.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use isol_common::spec::{Protocol, Publish, Subnet};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The network's directory.
pub fn net_dir() -> PathBuf {
    isol_common::paths::run_dir().join("net")
}

/// What a lease file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The run's id.
    pub run: String,
    /// Its host-side link (veth end or tap).
    pub link: String,
    /// Its published ports.
    pub publish: Vec<Publish>,
}

impl LeaseInfo {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut s = format!("run {}\nlink {}\n", self.run, self.link);
        for p in &self.publish {
            let ip = p.host_ip.map_or("-".to_string(), |i| i.to_string());
            s += &format!(
                "publish {} {ip} {} {}\n",
                p.protocol.as_str(),
                p.host_port,
                p.port
            );
        }
        s
    }

    /// Parses a lease file (unknown lines are skipped).
    pub fn parse(text: &str) -> LeaseInfo {
        let mut info = LeaseInfo {
            run: String::new(),
            link: String::new(),
            publish: Vec::new(),
        };
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["run", r] => info.run = r.to_string(),
                ["link", l] => info.link = l.to_string(),
                ["publish", proto, ip, hp, p] => {
                    let protocol = if *proto == "udp" {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    };
                    if let (Ok(host_port), Ok(port)) = (hp.parse(), p.parse()) {
                        info.publish.push(Publish {
                            host_ip: ip.parse().ok(),
                            host_port,
                            port,
                            protocol,
                        });
                    }
                }
                _ => {}
            }
        }
        info
    }
}

/// The network's lock, held while alive.
#[derive(Debug)]
pub struct NetLock {
    _lock: Flock<File>,
}

/// Takes the network's lock (waits for it).
pub fn lock(dir: &Path) -> std::io::Result<NetLock> {
    fs::create_dir_all(dir)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("lock"))?;
    let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    Ok(NetLock { _lock: lock })
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    /// The leased address.
    pub addr: Ipv4Addr,
    /// The lease file.
    pub path: PathBuf,
    _lock: Flock<File>,
}

/// The lease file of `addr`.
pub fn lease_path(dir: &Path, addr: Ipv4Addr) -> PathBuf {
    dir.join("leases").join(addr.to_string())
}

/// The addresses leased now (the files in `leases/`).
pub fn leased(dir: &Path) -> Vec<Ipv4Addr> {
    let Ok(entries) = fs::read_dir(dir.join("leases")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Leases the first free address of `subnet` (after the gateway, before broadcast).
/// Call with the network's lock held.
pub fn allocate(dir: &Path, subnet: Subnet, info: &LeaseInfo) -> std::io::Result<Option<Lease>> {
    fs::create_dir_all(dir.join("leases"))?;
    let taken = leased(dir);
    let last = u32::try_from(subnet.size().saturating_sub(2)).unwrap_or(u32::MAX);
    for n in 2..=last {
        let addr = subnet.nth(n);
        if taken.contains(&addr) {
            continue;
        }
        let path = lease_path(dir, addr);
        let mut f = match OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            r => r?,
        };
        let mut info = info.clone();
        info.link = host_link_name(addr);
        f.write_all(info.to_text().as_bytes())?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        return Ok(Some(Lease {
            addr,
            path,
            _lock: lock,
        }));
    }
    Ok(None)
}

/// The first of `publish` that a leased run has published too, with that run's id.
/// Call with the network's lock held (after removing dead runs' leases).
pub fn port_holder(dir: &Path, publish: &[Publish]) -> Option<(Publish, String)> {
    leased(dir).into_iter().find_map(|addr| {
        let text = fs::read_to_string(lease_path(dir, addr)).unwrap_or_default();
        let info = LeaseInfo::parse(&text);
        publish
            .iter()
            .find(|p| info.publish.iter().any(|q| q.clashes(p)))
            .map(|p| (*p, info.run.clone()))
    })
}

/// The host-side link name of the run at `addr` (unique while the lease is held).
pub fn host_link_name(addr: Ipv4Addr) -> String {
    format!("isolh{:08x}", u32::from(addr))
}

/// The workload-side name of that link until it is renamed eth0 inside the workload.
pub fn peer_link_name(addr: Ipv4Addr) -> String {
    format!("isolp{:08x}", u32::from(addr))
}

/// The leases whose runs are dead (their lock can be taken), with what they say.
/// Call with the network's lock held.
pub fn stale(dir: &Path) -> Vec<(Ipv4Addr, LeaseInfo)> {
    leased(dir)
        .into_iter()
        .filter_map(|addr| {
            let path = lease_path(dir, addr);
            let f = File::options().read(true).open(&path).ok()?;
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(_) => {}
                Err((_, Errno::EWOULDBLOCK)) => return None,
                Err(_) => return None,
            }
            let text = fs::read_to_string(&path).unwrap_or_default();
            Some((addr, LeaseInfo::parse(&text)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use isol_common::spec::DEFAULT_SUBNET;

    fn info() -> LeaseInfo {
        LeaseInfo {
            run: "isol-1-ab".into(),
            link: String::new(),
            publish: vec![Publish {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 8080,
                port: 80,
                protocol: Protocol::Udp,
            }],
        }
    }

    #[test]
    fn test_lease_info_round_trip() {
        let i = info();
        assert_eq!(LeaseInfo::parse(&i.to_text()), i);
    }

    #[test]
    fn test_allocate_distinct_and_held_leases_not_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let a = allocate(tmp.path(), DEFAULT_SUBNET, &info())
            .unwrap()
            .unwrap();
        let b = allocate(tmp.path(), DEFAULT_SUBNET, &info())
            .unwrap()
            .unwrap();
        assert_eq!(a.addr, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(b.addr, Ipv4Addr::new(10, 88, 0, 3));
        assert!(stale(tmp.path()).is_empty());
        drop(a);
        let s = stale(tmp.path());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(s[0].1.link, "isolh0a580002");
    }

    #[test]
    fn test_allocate_full_subnet_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        let tiny = Subnet {
            addr: Ipv4Addr::new(10, 1, 0, 0),
            prefix: 29,
        };
        let held: Vec<Lease> = (0..5)
            .map(|_| allocate(tmp.path(), tiny, &info()).unwrap().unwrap())
            .collect();
        assert_eq!(held.last().unwrap().addr, Ipv4Addr::new(10, 1, 0, 6));
        assert!(allocate(tmp.path(), tiny, &info()).unwrap().is_none());
    }
}
