use super::*;
use crate::spec::{Mode, Overrides, SpecError, WorkloadSpec};

fn spec(ov: Overrides) -> Result<WorkloadSpec, SpecError> {
    let ov = Overrides {
        args: vec!["true".into()],
        ..ov
    };
    WorkloadSpec::from_toml("", &ov)
}

fn bridge() -> Overrides {
    Overrides {
        network: Some("bridge".into()),
        ..Overrides::default()
    }
}

#[test]
fn test_network_default_is_none_with_podman_subnet() {
    let s = spec(Overrides::default()).unwrap();
    assert_eq!(s.network, Network::default());
    assert_eq!(s.network.mode, NetworkMode::None);
    assert_eq!(s.network.subnet.to_string(), "10.88.0.0/16");
    assert_eq!(s.network.subnet.gateway(), Ipv4Addr::new(10, 88, 0, 1));
}

#[test]
fn test_network_bridge_flags_parse() {
    let s = spec(Overrides {
        publish: vec!["127.0.0.1:8080:80".into(), "5353:53/udp".into()],
        dns: vec!["192.0.2.53".into()],
        add_hosts: vec!["db.local:192.0.2.7".into(), "six:fd00::1".into()],
        subnet: Some("10.99.0.0/24".into()),
        ..bridge()
    })
    .unwrap();
    let n = s.network;
    assert_eq!(n.mode, NetworkMode::Bridge);
    assert_eq!(
        n.publish,
        vec![
            Publish {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 8080,
                port: 80,
                protocol: Protocol::Tcp
            },
            Publish {
                host_ip: None,
                host_port: 5353,
                port: 53,
                protocol: Protocol::Udp
            }
        ]
    );
    assert_eq!(n.dns, vec![Ipv4Addr::new(192, 0, 2, 53)]);
    assert_eq!(n.add_hosts[1].1, "fd00::1".parse::<IpAddr>().unwrap());
    assert_eq!(n.subnet.size(), 256);
}

#[test]
fn test_network_from_file_and_flags_add() {
    let text = r#"
        [network]
        mode = "bridge"
        publish = ["8080:80"]
        dns = ["192.0.2.1"]
    "#;
    let ov = Overrides {
        args: vec!["true".into()],
        dns: vec!["192.0.2.2".into()],
        ..Overrides::default()
    };
    let n = WorkloadSpec::from_toml(text, &ov).unwrap().network;
    assert_eq!(n.mode, NetworkMode::Bridge);
    assert_eq!(n.publish.len(), 1);
    assert_eq!(n.dns.len(), 2);
}

fn err(ov: Overrides) -> String {
    spec(ov).unwrap_err().to_string()
}

#[test]
fn test_network_bad_values_name_the_flag() {
    let e = err(Overrides {
        network: Some("host".into()),
        ..Overrides::default()
    });
    assert!(
        e.contains("--network") && e.contains("none") && e.contains("bridge"),
        "{e}"
    );
    for bad in [
        "80",
        "0:80",
        "8080:70000",
        "1.2.3:8080:80",
        "8080:80/sctp",
        "a:b:c:d",
    ] {
        let e = err(Overrides {
            publish: vec![bad.into()],
            ..bridge()
        });
        assert!(e.starts_with("--publish"), "{bad}: {e}");
    }
    for bad in [
        "10.88.0.1/16",
        "10.0.0.0/31",
        "10.0.0.0",
        "127.0.0.0/8",
        "x/8",
    ] {
        let e = err(Overrides {
            subnet: Some(bad.into()),
            ..bridge()
        });
        assert!(e.starts_with("--subnet"), "{bad}: {e}");
    }
    let e = err(Overrides {
        dns: vec!["::1".into()],
        ..bridge()
    });
    assert!(e.starts_with("--dns"), "{e}");
    let e = err(Overrides {
        add_hosts: vec!["nocolon".into()],
        ..bridge()
    });
    assert!(e.starts_with("--add-host"), "{e}");
}

#[test]
fn test_network_flags_without_bridge_refused() {
    let e = err(Overrides {
        publish: vec!["8080:80".into()],
        ..Overrides::default()
    });
    assert!(
        e.contains("--publish") && e.contains("--network bridge"),
        "{e}"
    );
}

#[test]
fn test_network_same_host_port_twice_refused() {
    let e = err(Overrides {
        publish: vec!["8080:80".into(), "127.0.0.1:8080:81".into()],
        ..bridge()
    });
    assert!(e.contains("published twice"), "{e}");
    // Different protocols may share a port number.
    spec(Overrides {
        publish: vec!["8080:80".into(), "8080:80/udp".into()],
        ..bridge()
    })
    .unwrap();
}

#[test]
fn test_network_bridge_in_vm_mode_is_not_yet_supported() {
    let e = err(Overrides {
        mode: Some("vm".into()),
        ..bridge()
    });
    assert!(e.contains("not yet supported in VM mode"), "{e}");
    let s = spec(Overrides {
        mode: Some(Mode::Vm.to_string()),
        ..Overrides::default()
    })
    .unwrap();
    assert_eq!(s.network.mode, NetworkMode::None);
}
