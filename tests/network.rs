//! Black-box tests of `--network bridge` in container mode (root). Every test builds its
//! own namespaces (tests/network/lab.rs): isol runs in the lab's "host" namespace, the
//! "outside" servers in another one; nothing touches this machine's real network.
//!
//! Two workloads on the same bridge may reach each other (as on docker's and podman's
//! default bridge networks): a bridge network is one L2 segment, and `--network none`
//! is the way to be alone.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

#[path = "network/lab.rs"]
mod netlab;
mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use netlab::{Lab, HOST_IP, OUTSIDE_IP};
use support::{assert_code, skip_privileged, stderr, stdout};

fn run(lab: &Lab, args: &[&str]) -> Output {
    lab.isol(args).output().unwrap()
}

/// Retries `f` until it returns Some, for at most 60 s (a watchdog, not a measurement).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GNU `wget -q -O- URL` from the lab's namespace `ns`; `None` until it answers.
fn wget(lab: &Lab, ns: &str, url: &str) -> Option<String> {
    let out = lab
        .in_ns(ns, "wget")
        .args(["-q", "-t", "1", "-T", "5", "-O-", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

const HTTPD: &str = "mkdir -p /tmp/w && echo hello-from-$(hostname) > /tmp/w/index.html && \
                     exec httpd -f -p 80 -h /tmp/w";

#[test]
fn test_bridge_workload_sees_its_interface_route_and_files() {
    if skip_privileged("test_bridge_workload_sees_its_interface_route_and_files") {
        return;
    }
    let lab = Lab::new();
    let out = run(
        &lab,
        &[
            "--network", "bridge", "--hostname", "web", "--dns", "192.0.2.53",
            "--add-host", "db.test:192.0.2.7", "--",
            "sh", "-c",
            "ip -o -4 addr show eth0; ip route; ip -o link | wc -l; cat /etc/resolv.conf /etc/hosts /etc/hostname; ip -6 -o addr show eth0 | wc -l",
        ],
    );
    assert_code(&out, 0);
    let s = stdout(&out);
    assert!(
        s.contains("eth0    inet 10.88.0.2/16 brd 10.88.255.255"),
        "{s}"
    );
    assert!(s.contains("default via 10.88.0.1 dev eth0"), "{s}");
    assert!(
        s.contains("10.88.0.0/16 dev eth0 scope link  src 10.88.0.2"),
        "{s}"
    );
    assert!(s.contains("\n2\n"), "lo and eth0 only: {s}");
    assert!(s.contains("nameserver 192.0.2.53\n"), "{s}");
    assert!(s.contains("127.0.0.1\tlocalhost\n"), "{s}");
    assert!(s.contains("10.88.0.2\tweb\n192.0.2.7\tdb.test\n"), "{s}");
    assert!(
        s.contains("\nweb\n0\n"),
        "hostname, then no IPv6 on eth0: {s}"
    );
    // The MTU is the uplink's (the lab's veth: 1500).
    let out = run(
        &lab,
        &[
            "--network",
            "bridge",
            "--",
            "cat",
            "/sys/class/net/eth0/mtu",
        ],
    );
    assert_eq!(stdout(&out), "1500\n");
}

#[test]
fn test_published_port_reached_on_host_address_loopback_and_from_outside() {
    if skip_privileged("test_published_port_reached_on_host_address_loopback_and_from_outside") {
        return;
    }
    let mut lab = Lab::new();
    let before = lab.state();
    let cmd = lab.isol(&[
        "--network",
        "bridge",
        "--hostname",
        "web",
        "--publish",
        "127.0.0.1:8081:80",
        "--publish",
        "8080:80",
        "--",
        "sh",
        "-c",
        HTTPD,
    ]);
    let isol = lab.spawn(cmd);
    let host = lab.host.clone();
    let want = "hello-from-web\n";
    let got = eventually("the published port answers on 127.0.0.1:8081", || {
        wget(&lab, &host, "http://127.0.0.1:8081/")
    });
    assert_eq!(got, want);
    assert_eq!(
        wget(&lab, &host, "http://127.0.0.1:8080/").as_deref(),
        Some(want)
    );
    let url = format!("http://{HOST_IP}:8080/");
    assert_eq!(wget(&lab, &host, &url).as_deref(), Some(want));
    let outside = lab.outside.clone();
    assert_eq!(wget(&lab, &outside, &url).as_deref(), Some(want));
    // Published on 127.0.0.1 only: not on the host's other addresses.
    let url = format!("http://{HOST_IP}:8081/");
    assert_eq!(wget(&lab, &outside, &url), None);
    // SIGTERM reaches the workload; the run ends and leaves nothing.
    let pid = lab.child(isol).id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = lab.child(isol).wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert_eq!(lab.state(), before);
}

/// Accepts TCP connections forever and answers each with the peer's address.
const PEER_SERVER: &str = "import socket,sys\n\
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind((sys.argv[1], 9000)); s.listen(16)\n\
while True:\n    c,a=s.accept(); c.sendall(a[0].encode()+b'\\n'); c.close()\n";

/// Answers every DNS query over UDP with one A record, 192.0.2.99.
const DNS_SERVER: &str = "import socket,sys\n\
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 53))\n\
while True:\n    q,a=s.recvfrom(512); e=q.index(0,12)+5\n    \
r=q[:2]+b'\\x81\\x80'+q[4:6]+b'\\x00\\x01\\x00\\x00\\x00\\x00'+q[12:e]+b'\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x3c\\x00\\x04\\xc0\\x00\\x02\\x63'\n    \
s.sendto(r,a)\n";

#[test]
fn test_outbound_nat_masquerades_to_the_host_address() {
    if skip_privileged("test_outbound_nat_masquerades_to_the_host_address") {
        return;
    }
    let mut lab = Lab::new();
    lab.outside_python(PEER_SERVER);
    let script = format!(
        "until nc {OUTSIDE_IP} 9000 > /tmp/o 2>/dev/null && [ -s /tmp/o ]; do sleep 0.05; done; cat /tmp/o"
    );
    let out = run(
        &lab,
        &[
            "--network",
            "bridge",
            "--timeout",
            "60",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        format!("{HOST_IP}\n"),
        "the outside sees the host's address"
    );
}

#[test]
fn test_udp_round_trip_through_nat_with_dns_flag() {
    if skip_privileged("test_udp_round_trip_through_nat_with_dns_flag") {
        return;
    }
    let mut lab = Lab::new();
    lab.outside_python(DNS_SERVER);
    let script = "until nslookup svc.isol.test > /tmp/o 2>&1; do sleep 0.05; done; grep -q 192.0.2.99 /tmp/o && echo answered";
    let out = run(
        &lab,
        &[
            "--network",
            "bridge",
            "--dns",
            OUTSIDE_IP,
            "--timeout",
            "60",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "answered\n", "{}", stderr(&out));
}

#[test]
fn test_two_workloads_on_the_bridge_reach_each_other() {
    if skip_privileged("test_two_workloads_on_the_bridge_reach_each_other") {
        return;
    }
    let mut lab = Lab::new();
    let cmd = lab.isol(&[
        "--network",
        "bridge",
        "--hostname",
        "a",
        "--",
        "sh",
        "-c",
        HTTPD,
    ]);
    lab.spawn(cmd);
    // The first run of a fresh lab gets 10.88.0.2, the second 10.88.0.3.
    let host = lab.host.clone();
    eventually("the first workload serves", || {
        wget(&lab, &host, "http://10.88.0.2/")
    });
    let script = "until wget -q -O- http://10.88.0.2/ > /tmp/o; do sleep 0.05; done; cat /tmp/o; ip -o -4 addr show eth0";
    let out = run(
        &lab,
        &[
            "--network",
            "bridge",
            "--timeout",
            "60",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_code(&out, 0);
    let s = stdout(&out);
    assert!(s.starts_with("hello-from-a\n"), "{s}");
    assert!(s.contains("inet 10.88.0.3/16"), "{s}");
}

#[test]
fn test_network_none_is_loopback_only_and_leaves_etc_alone() {
    if skip_privileged("test_network_none_is_loopback_only_and_leaves_etc_alone") {
        return;
    }
    let lab = Lab::new();
    let before = lab.state();
    let out = run(
        &lab,
        &[
            "--",
            "sh",
            "-c",
            "ip -o link | wc -l; ip -o link; test -e /etc/resolv.conf || echo no-resolv",
        ],
    );
    assert_code(&out, 0);
    let s = stdout(&out);
    assert!(s.starts_with("1\n1: lo: <LOOPBACK,UP,LOWER_UP>"), "{s}");
    assert!(s.ends_with("no-resolv\n"), "{s}");
    assert_eq!(
        lab.state(),
        before,
        "no bridge, no table for --network none"
    );
}

#[test]
fn test_hundred_bridge_runs_leave_links_ruleset_and_leases_as_they_were() {
    if skip_privileged("test_hundred_bridge_runs_leave_links_ruleset_and_leases_as_they_were") {
        return;
    }
    let lab = Lab::new();
    let before = lab.state();
    for i in 0..100 {
        let out = run(
            &lab,
            &["--network", "bridge", "--publish", "8080:80", "--", "true"],
        );
        assert_eq!(out.status.code(), Some(0), "run {i}: {}", stderr(&out));
    }
    assert_eq!(lab.state(), before);
}

#[test]
fn test_concurrent_runs_get_distinct_addresses() {
    if skip_privileged("test_concurrent_runs_get_distinct_addresses") {
        return;
    }
    let lab = Lab::new();
    let before = lab.state();
    let shared = tempfile::tempdir().unwrap();
    let vol = format!("{}:/v", shared.path().display());
    const N: usize = 6;
    // Each run writes its address, then waits until all N have: they all hold a lease at
    // the same time.
    let script = format!(
        "a=$(ip -o -4 addr show eth0 | awk '{{print $4}}'); echo $a > /v/$$-$RANDOM; \
         until [ $(ls /v | wc -l) -ge {N} ]; do sleep 0.05; done; echo $a"
    );
    let children: Vec<_> = (0..N)
        .map(|_| {
            lab.isol(&[
                "--network",
                "bridge",
                "--volume",
                &vol,
                "--timeout",
                "60",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut addrs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert_code(&out, 0);
            stdout(&out)
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), N, "{addrs:?}");
    assert_eq!(lab.state(), before);
}

#[test]
fn test_sigkill_of_isol_then_gc_removes_lease_link_rules_and_bridge() {
    if skip_privileged("test_sigkill_of_isol_then_gc_removes_lease_link_rules_and_bridge") {
        return;
    }
    let mut lab = Lab::new();
    let before = lab.state();
    let cmd = lab.isol(&[
        "--network",
        "bridge",
        "--publish",
        "8080:80",
        "--",
        "sh",
        "-c",
        HTTPD,
    ]);
    let i = lab.spawn(cmd);
    let host = lab.host.clone();
    eventually("the workload serves", || {
        wget(&lab, &host, "http://127.0.0.1:8080/")
    });
    assert_ne!(lab.state(), before);
    lab.child(i).kill().unwrap();
    lab.child(i).wait().unwrap();
    // The run's processes die with isol (parent-death signal); once they are gone the
    // lease is free and gc removes what is left.
    eventually("gc cleans up after the killed run", || {
        let out = lab.gc();
        assert_code(&out, 0);
        (lab.state() == before).then_some(())
    });
}

#[test]
fn test_subnet_colliding_with_a_host_route_is_refused_and_leaves_nothing() {
    if skip_privileged("test_subnet_colliding_with_a_host_route_is_refused_and_leaves_nothing") {
        return;
    }
    let lab = Lab::new();
    lab.host_sh("ip route add 10.88.5.0/24 via 10.200.0.2");
    let before = lab.state();
    let out = run(&lab, &["--network", "bridge", "--", "true"]);
    assert_code(&out, 125);
    let e = stderr(&out);
    assert!(
        e.contains("collides with the host's route 10.88.5.0/24") && e.contains("--subnet"),
        "{e}"
    );
    assert_eq!(lab.state(), before);
    let out = run(
        &lab,
        &[
            "--network",
            "bridge",
            "--subnet",
            "10.89.0.0/16",
            "--",
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert_code(&out, 0);
    assert!(stdout(&out).contains("inet 10.89.0.2/16"));
    assert_eq!(lab.state(), before);
}

#[test]
fn test_bad_network_flags_exit_125() {
    if skip_privileged("test_bad_network_flags_exit_125") {
        return;
    }
    let lab = Lab::new();
    for args in [
        &["--network", "host", "--", "true"][..],
        &["--network", "bridge", "--publish", "80", "--", "true"],
        &["--publish", "8080:80", "--", "true"],
    ] {
        let out = run(&lab, args);
        assert_code(&out, 125);
    }
    let isol = support::isol_bin();
    let out = lab
        .in_ns(&lab.host, isol.to_str().unwrap())
        .args(["run", "--mode", "vm", "--network", "bridge", "--", "true"])
        .output()
        .unwrap();
    assert_code(&out, 125);
    assert!(stderr(&out).contains("not yet supported in VM mode"));
}

/// The bridge has route_localnet on (for 127.0.0.1 published ports): a peer on the
/// bridge (a workload with raw sockets, here a namespace the test plugs in) must still
/// not reach the host's services bound to 127.0.0.1 by sending to 127.0.0.1 through the
/// gateway (CVE-2020-8558, kube-proxy's bug). The attacker namespace accepts replies from
/// 127.0.0.1 (route_localnet), as a workload reading raw frames would.
#[test]
fn test_bridge_peer_cannot_reach_host_loopback_services() {
    if skip_privileged("test_bridge_peer_cannot_reach_host_loopback_services") {
        return;
    }
    let mut lab = Lab::new();
    let cmd = lab.isol(&["--network", "bridge", "--", "sleep", "600"]);
    lab.spawn(cmd);
    let host = lab.host.clone();
    let mut srv = lab.in_ns(&host, "/usr/bin/python3");
    srv.args(["-c", PEER_SERVER, "127.0.0.1"]);
    lab.spawn(srv);
    eventually("the bridge exists", || {
        lab.host_sh("ip -o link show isol0 2>/dev/null || true")
            .contains("isol0")
            .then_some(())
    });
    let attacker = format!("{}-atk", lab.outside);
    lab.host_sh(&format!(
        "ip netns add {attacker} && ip link add atkh type veth peer name atk netns {attacker} && \
         ip link set atkh master isol0 up && \
         ip -n {attacker} link set lo up && ip -n {attacker} link set atk up && \
         ip -n {attacker} addr add 10.88.255.200/16 dev atk && \
         ip -n {attacker} addr del 127.0.0.1/8 dev lo && \
         ip -n {attacker} route add 127.0.0.1/32 via 10.88.0.1 dev atk && \
         ip netns exec {attacker} sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.atk.route_localnet=1 \
           net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.atk.rp_filter=0"
    ));
    // The server answers on the host's loopback.
    let local = lab.host_sh("until busybox nc 127.0.0.1 9000; do sleep 0.05; done");
    assert_eq!(local, "127.0.0.1\n");
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &attacker,
            "timeout",
            "5",
            "busybox",
            "nc",
            "127.0.0.1",
            "9000",
        ])
        .output()
        .unwrap();
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &attacker])
        .status();
    assert_eq!(
        stdout(&out),
        "",
        "a bridge peer reached the host's 127.0.0.1:9000"
    );
}

#[test]
fn test_host_port_published_by_a_live_run_is_refused_and_released() {
    if skip_privileged("test_host_port_published_by_a_live_run_is_refused_and_released") {
        return;
    }
    let mut lab = Lab::new();
    let before = lab.state();
    let cmd = lab.isol(&[
        "--network",
        "bridge",
        "--publish",
        "8080:80",
        "--",
        "sh",
        "-c",
        HTTPD,
    ]);
    let first = lab.spawn(cmd);
    let host = lab.host.clone();
    eventually("the first run serves", || {
        wget(&lab, &host, "http://127.0.0.1:8080/")
    });
    let during = lab.state();
    let out = run(
        &lab,
        &[
            "--network",
            "bridge",
            "--publish",
            "127.0.0.1:8080:81",
            "--",
            "true",
        ],
    );
    assert_code(&out, 125);
    assert!(
        stderr(&out).contains("already published"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.state(), during, "the refused run left nothing");
    lab.child(first).kill().unwrap();
    lab.child(first).wait().unwrap();
    eventually("gc cleans up", || {
        assert_code(&lab.gc(), 0);
        (lab.state() == before).then_some(())
    });
}

#[test]
fn test_read_only_root_gets_the_files_read_only() {
    if skip_privileged("test_read_only_root_gets_the_files_read_only") {
        return;
    }
    let lab = Lab::new();
    let script = "cat /etc/hostname; echo x >> /etc/resolv.conf 2>/dev/null || echo ro";
    let out = run(
        &lab,
        &[
            "--network",
            "bridge",
            "--read-only",
            "--hostname",
            "ro",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "ro\nro\n");
}
