use std::fs;
use std::path::Path;

use isol_common::spec::Resources;
use tempfile::TempDir;

use super::*;

/// A fake cgroupfs in a TempDir: `layout(v2)` returns a Layout whose mount points live
/// under the TempDir, with the control files the real kernel would show.
struct FakeCgroupFs {
    tmp: TempDir,
}

impl FakeCgroupFs {
    fn new() -> Self {
        FakeCgroupFs {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn hybrid(&self) -> Layout {
        let mut mi = String::new();
        for (i, c) in ["cpu", "cpuacct", "cpuset", "memory", "pids", "devices"]
            .iter()
            .enumerate()
        {
            let m = self.root().join(c);
            fs::create_dir_all(&m).unwrap();
            mi += &format!(
                "{} 31 0:{i} / {} rw - cgroup cgroup rw,{c}\n",
                32 + i,
                m.display()
            );
        }
        let own = self.root().join("memory/api");
        fs::create_dir_all(&own).unwrap();
        fs::write(self.root().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
        fs::write(self.root().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let u = self.root().join("unified");
        fs::create_dir_all(&u).unwrap();
        mi += &format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", u.display());
        Layout::parse(&mi, "4:memory:/api\n0::/\n", &|_| "hugetlb".into())
    }

    fn v2(&self) -> Layout {
        let m = self.root().join("unified");
        fs::create_dir_all(&m).unwrap();
        fs::write(m.join("cpuset.cpus.effective"), "0-1\n").unwrap();
        fs::write(m.join("cpuset.mems.effective"), "0\n").unwrap();
        let mi = format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", m.display());
        Layout::parse(&mi, "0::/\n", &|_| "cpuset cpu memory pids".into())
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

fn limits(memory: Option<u64>, pids: Option<u64>, cpus: Option<f64>) -> Resources {
    Resources { cpus, memory, pids }
}

#[test]
fn test_plan_no_limits_only_the_device_cgroup() {
    let fs_ = FakeCgroupFs::new();
    let dirs = plan(
        &fs_.hybrid(),
        &Resources::default(),
        "isol-1-a",
        &CpusetInfo::default(),
    )
    .unwrap();
    assert_eq!(dirs.len(), 1, "{dirs:#?}");
    let d = &dirs[0];
    assert_eq!(d.path, fs_.root().join("devices/isol/isol-1-a"));
    assert!(!d.device_program);
    assert_eq!(d.writes[0].path, d.path.join("devices.deny"));
    assert_eq!(d.writes[0].value, "a", "deny everything first");
    let allowed: Vec<&str> = d.writes[1..].iter().map(|w| w.value.as_str()).collect();
    assert_eq!(allowed, isol_sandbox::view::devices::v1_rules());
    assert!(d.writes[1..]
        .iter()
        .all(|w| w.path == d.path.join("devices.allow")));
    // Pure cgroup2: a cgroup with the BPF program and no controller writes.
    let dirs = plan(
        &fs_.v2(),
        &Resources::default(),
        "isol-1-b",
        &CpusetInfo::default(),
    )
    .unwrap();
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0].device_program && dirs[0].writes.is_empty());
}

#[test]
fn test_plan_without_any_device_cgroup_is_a_clear_error() {
    let e = plan(
        &Layout::default(),
        &Resources::default(),
        "x",
        &CpusetInfo::default(),
    )
    .unwrap_err();
    assert!(matches!(e, CgroupError::NoDeviceCgroup), "{e}");
}

#[test]
fn test_create_hybrid_v1_writes_limits_in_own_hierarchies() {
    let fs_ = FakeCgroupFs::new();
    let layout = fs_.hybrid();
    let cpuset = read_cpuset(layout.find(Controller::Cpuset).unwrap()).unwrap();
    assert_eq!(cpuset.cpus, [0, 1, 2, 3]);
    let r = limits(Some(64 << 20), Some(10), Some(1.5));
    let p = plan(&layout, &r, "isol-1-a", &cpuset).unwrap();
    assert_eq!(p.len(), 5, "{p:#?}");
    let cg = create(p).unwrap();
    assert_eq!(
        fs_.read("memory/api/isol/isol-1-a/memory.limit_in_bytes"),
        "67108864"
    );
    // Optional: the fake has no swap accounting file, so it is skipped, not created.
    assert!(!fs_
        .root()
        .join("memory/api/isol/isol-1-a/memory.memsw.limit_in_bytes")
        .exists());
    assert_eq!(fs_.read("pids/isol/isol-1-a/pids.max"), "11");
    assert_eq!(fs_.read("cpu/isol/isol-1-a/cpu.cfs_period_us"), "100000");
    assert_eq!(fs_.read("cpu/isol/isol-1-a/cpu.cfs_quota_us"), "150000");
    assert_eq!(fs_.read("cpuset/isol/cpuset.cpus"), "0,1,2,3");
    assert_eq!(fs_.read("cpuset/isol/cpuset.mems"), "0");
    assert_eq!(fs_.read("cpuset/isol/isol-1-a/cpuset.cpus"), "0,1");
    assert_eq!(fs_.read("cpuset/isol/isol-1-a/cpuset.mems"), "0");
    cg.attach(4242).unwrap();
    assert_eq!(fs_.read("devices/isol/isol-1-a/devices.deny"), "a");
    for c in ["memory/api", "pids", "cpu", "cpuset", "devices"] {
        assert_eq!(fs_.read(&format!("{c}/isol/isol-1-a/cgroup.procs")), "4242");
    }
    assert!(!fs_.root().join("unified/isol").exists());
    std::mem::forget(cg);
}

#[test]
fn test_create_pure_v2_single_cgroup_with_subtree_control() {
    let fs_ = FakeCgroupFs::new();
    let layout = fs_.v2();
    let cpuset = read_cpuset(layout.find(Controller::Cpuset).unwrap()).unwrap();
    let r = limits(Some(32 << 20), Some(5), Some(0.5));
    let mut p = plan(&layout, &r, "isol-2-b", &cpuset).unwrap();
    assert_eq!(p.len(), 1, "one cgroup2 directory for every controller");
    assert!(
        p[0].device_program,
        "cgroup2: the device allow-list is a BPF program"
    );
    // A TempDir is no cgroup to attach a program to (tests/cgroup2_lab.rs does it).
    p[0].device_program = false;
    let cg = create(p).unwrap();
    assert_eq!(fs_.read("unified/isol/isol-2-b/memory.max"), "33554432");
    assert_eq!(fs_.read("unified/isol/isol-2-b/pids.max"), "6");
    assert_eq!(fs_.read("unified/isol/isol-2-b/cpu.max"), "50000 100000");
    assert_eq!(fs_.read("unified/isol/isol-2-b/cpuset.cpus"), "0");
    // The fake file keeps only the last write; the kernel accumulates them.
    assert!(fs_.read("unified/cgroup.subtree_control").starts_with('+'));
    assert!(fs_
        .root()
        .join("unified/isol/cgroup.subtree_control")
        .exists());
    // memory.swap.max does not exist in the fake (no swap): optional, skipped.
    std::mem::forget(cg);
}

#[test]
fn test_plan_too_many_cpus_is_clear_error() {
    let fs_ = FakeCgroupFs::new();
    let layout = fs_.v2();
    let cpuset = read_cpuset(layout.find(Controller::Cpuset).unwrap()).unwrap();
    let e = plan(&layout, &limits(None, None, Some(2.5)), "x", &cpuset).unwrap_err();
    assert!(matches!(
        e,
        CgroupError::TooManyCpus {
            wanted: 3,
            available: 2,
            ..
        }
    ));
    assert!(e.to_string().contains("--cpus 2 or less"), "{e}");
}

#[test]
fn test_plan_missing_controller_names_limit() {
    let layout = Layout::default();
    let e = plan(
        &layout,
        &limits(None, Some(3), None),
        "x",
        &CpusetInfo::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("pids limit needs the pids cgroup controller"),
        "{e}"
    );
}

#[test]
fn test_create_failure_removes_what_it_made() {
    let fs_ = FakeCgroupFs::new();
    let layout = fs_.hybrid();
    // pids.max unwritable: make it a directory.
    let r = limits(Some(64 << 20), Some(10), None);
    let mut p = plan(&layout, &r, "isol-3-c", &CpusetInfo::default()).unwrap();
    p[1].writes[0].path = fs_.root().join("nonexistent/pids.max");
    assert!(create(p).is_err());
    assert!(
        !fs_.root().join("memory/api/isol/isol-3-c").exists()
            || fs::read_dir(fs_.root().join("memory/api/isol/isol-3-c"))
                .unwrap()
                .count()
                > 0
    );
}

#[test]
fn test_remove_dir_missing_is_ok_and_parent_best_effort() {
    let fs_ = FakeCgroupFs::new();
    let parent = fs_.root().join("p");
    let child = parent.join("c");
    fs::create_dir_all(&child).unwrap();
    remove_dir(&child, Some(&parent)).unwrap();
    assert!(!parent.exists());
    remove_dir(&child, None).unwrap();
}

#[test]
fn test_plan_cpuset_takes_first_cpus_of_rotated_list_ascending() {
    let fs_ = FakeCgroupFs::new();
    let layout = fs_.hybrid();
    let cpuset = CpusetInfo {
        cpus: vec![2, 3, 0, 1],
        mems: "0".into(),
    };
    let p = plan(&layout, &limits(None, None, Some(2.0)), "isol-4-d", &cpuset).unwrap();
    let all: Vec<&Write> = p
        .iter()
        .flat_map(|d| d.parent_writes.iter().chain(&d.writes))
        .collect();
    let get = |suffix: &str| {
        all.iter()
            .find(|w| w.path.ends_with(suffix))
            .map(|w| w.value.clone())
            .unwrap()
    };
    assert_eq!(get("isol/cpuset.cpus"), "0,1,2,3");
    assert_eq!(get("isol-4-d/cpuset.cpus"), "2,3");
}
