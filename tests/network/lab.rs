//! A private network for one test: network namespaces the test creates and removes.
//! `host` is where isol runs (its bridge, nft table, published ports); `outside` is the
//! rest of the world, reached from `host` over a veth pair (10.200.0.1 <-> 10.200.0.2,
//! the host's default route). isol's run directory is a temp dir of the lab, so its
//! leases and records are the lab's own. No packet leaves these namespaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The host's address on the link to the outside.
pub const HOST_IP: &str = "10.200.0.1";
/// The outside's address.
pub const OUTSIDE_IP: &str = "10.200.0.2";

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
pub struct Lab {
    pub host: String,
    pub outside: String,
    pub run_dir: tempfile::TempDir,
    children: Vec<Child>,
}

use crate::support::run_ok as ok;

fn ip(args: &str) {
    ok(Command::new("ip").args(args.split_whitespace()));
}

impl Lab {
    pub fn new() -> Lab {
        super::support::require_root();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let (host, outside) = (format!("isolnh-{tag}"), format!("isolno-{tag}"));
        ip(&format!("netns add {host}"));
        ip(&format!("netns add {outside}"));
        let lab = Lab {
            host,
            outside,
            run_dir: tempfile::tempdir().expect("temp dir"),
            children: Vec::new(),
        };
        let (h, o) = (&lab.host, &lab.outside);
        ip(&format!(
            "link add hx netns {h} type veth peer name ox netns {o}"
        ));
        for (ns, dev, addr) in [(h, "hx", HOST_IP), (o, "ox", OUTSIDE_IP)] {
            ip(&format!("-n {ns} link set lo up"));
            ip(&format!("-n {ns} addr add {addr}/24 dev {dev}"));
            ip(&format!("-n {ns} link set {dev} up"));
        }
        ip(&format!("-n {h} route add default via {OUTSIDE_IP}"));
        lab
    }

    /// `nsenter --net=NS PROGRAM` (nsenter, not `ip netns exec`, which remounts /sys and
    /// hides the host's cgroups).
    pub fn in_ns(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{ns}")).arg(program);
        c.env("ISOL_RUN_DIR", self.run_dir.path());
        c
    }

    /// `isol run --mode container ARGS` in the host namespace.
    pub fn isol(&self, args: &[&str]) -> Command {
        let mut c = self.in_ns(&self.host, super::support::isol_bin().to_str().unwrap());
        c.args(["run", "--mode", "container"]).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// `isol gc` in the host namespace.
    pub fn gc(&self) -> Output {
        let mut c = self.in_ns(&self.host, super::support::isol_bin().to_str().unwrap());
        c.arg("gc").output().unwrap()
    }

    /// Runs a command in the host namespace and returns stdout (must succeed).
    pub fn host_sh(&self, script: &str) -> String {
        ok(self.in_ns(&self.host, "sh").args(["-c", script]))
    }

    /// Starts a background process in a namespace; killed when the lab ends.
    pub fn spawn(&mut self, mut cmd: Command) -> usize {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn child(&mut self, i: usize) -> &mut Child {
        &mut self.children[i]
    }

    /// A Python server in the outside namespace (the script gets the address to bind).
    pub fn outside_python(&mut self, script: &str) -> usize {
        let mut c = self.in_ns(&self.outside.clone(), "/usr/bin/python3");
        c.args(["-c", script, OUTSIDE_IP]);
        self.spawn(c)
    }

    /// What must be back as it was after runs: links, nft ruleset, ip_forward, leases.
    pub fn state(&self) -> String {
        // Names and addresses (a link's carrier state may still change after setup).
        let links =
            self.host_sh("ip -o link | awk '{print $2}'; ip -o addr | awk '{print $2, $4}'");
        let nft = self.host_sh("nft list ruleset");
        let fwd = self.host_sh("cat /proc/sys/net/ipv4/ip_forward");
        format!(
            "links:\n{links}\nnft:\n{nft}\nip_forward {fwd}\nleases {:?}\nfiles {:?}",
            list(&self.net_dir().join("leases")),
            list(&self.net_dir().join("files"))
        )
    }

    pub fn net_dir(&self) -> PathBuf {
        self.run_dir.path().join("net")
    }
}

/// A directory's entries (none when missing).
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.host, &self.outside] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
