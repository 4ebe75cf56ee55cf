//! Where the cgroup controllers are on this host: parsed from /proc/self/mountinfo and
//! /proc/self/cgroup (so hybrid v1 + v2 hosts and pure v2 hosts both work), with the
//! proc directory injectable for tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use isol_sandbox::cgroup::{Controller, Version};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1 or v2.
    pub version: Version,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// Controllers it carries (v1: from the mount options; v2: cgroup.controllers).
    pub controllers: Vec<String>,
    /// isol's own cgroup in it, as a directory under the mount point.
    pub own_dir: PathBuf,
}

/// All cgroup hierarchies of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The hierarchies, in mountinfo order.
    pub hierarchies: Vec<Hierarchy>,
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// isol's cgroup path for a hierarchy from /proc/self/cgroup (`4:memory:/a/b`, `0::/x`).
fn own_path(self_cgroup: &str, version: Version, controllers: &[String]) -> String {
    for line in self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let matches = match version {
            Version::V2 => ctrls.is_empty(),
            Version::V1 => ctrls.split(',').any(|c| controllers.iter().any(|h| h == c)),
        };
        if matches {
            return path.to_string();
        }
    }
    "/".to_string()
}

fn own_dir(mountpoint: &Path, mount_root: &str, own: &str) -> PathBuf {
    let rel = Path::new(own)
        .strip_prefix(mount_root)
        .unwrap_or(Path::new(""));
    mountpoint.join(rel)
}

impl Layout {
    /// Parses mountinfo and /proc/self/cgroup; `v2_controllers` reads a cgroup2 mount's
    /// `cgroup.controllers`.
    pub fn parse(
        mountinfo: &str,
        self_cgroup: &str,
        v2_controllers: &dyn Fn(&Path) -> String,
    ) -> Layout {
        let mut hierarchies = Vec::new();
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            if fields.len() < sep + 4 || fields.len() < 5 {
                continue;
            }
            let (root, mountpoint) = (unescape(fields[3]), PathBuf::from(unescape(fields[4])));
            let (fstype, super_opts) = (fields[sep + 1], fields[sep + 3]);
            let (version, controllers) = match fstype {
                "cgroup" => (
                    Version::V1,
                    super_opts
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                ),
                "cgroup2" => (
                    Version::V2,
                    v2_controllers(&mountpoint)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                ),
                _ => continue,
            };
            let own = own_path(self_cgroup, version, &controllers);
            hierarchies.push(Hierarchy {
                version,
                own_dir: own_dir(&mountpoint, &root, &own),
                mountpoint,
                controllers,
            });
        }
        Layout { hierarchies }
    }

    /// Reads the layout of the running host from `proc_self` (normally /proc/self).
    pub fn detect(proc_self: &Path) -> io::Result<Layout> {
        let mountinfo = read_proc(&proc_self.join("mountinfo"))?;
        let self_cgroup = read_proc(&proc_self.join("cgroup"))?;
        let read = |m: &Path| read_proc(&m.join("cgroup.controllers")).unwrap_or_default();
        Ok(Layout::parse(&mountinfo, &self_cgroup, &read))
    }

    /// The hierarchy carrying `c`: its v1 hierarchy if there is one (hybrid hosts keep
    /// memory and pids there), else cgroup2 if it has the controller.
    pub fn find(&self, c: Controller) -> Option<&Hierarchy> {
        let has = |h: &&Hierarchy| h.controllers.iter().any(|x| x == c.name());
        self.hierarchies
            .iter()
            .filter(|h| h.version == Version::V1)
            .find(has)
            .or_else(|| {
                self.hierarchies
                    .iter()
                    .filter(|h| h.version == Version::V2)
                    .find(has)
            })
    }
}

/// Reads a proc/cgroupfs file in few read(2)s: such files report size 0, and
/// `fs::read_to_string` would start with 32-byte reads and double (every run of isol
/// reads these, on its start path).
fn read_proc(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    let mut buf = Vec::with_capacity(16 << 10);
    fs::File::open(path)?.read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Parses a kernel CPU list (`0-3,8,10-11`).
pub fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/api/b3\n3:cpuset:/\n1:cpu:/\n0::/\n";

    #[test]
    fn test_layout_hybrid_prefers_v1_and_finds_own_cgroup() {
        let l = Layout::parse(HYBRID, HYBRID_SELF, &|_| "hugetlb\n".into());
        let mem = l.find(Controller::Memory).unwrap();
        assert_eq!(mem.version, Version::V1);
        assert_eq!(mem.own_dir, Path::new("/sys/fs/cgroup/memory/api/b3"));
        assert_eq!(
            l.find(Controller::Pids).unwrap().own_dir,
            Path::new("/sys/fs/cgroup/pids")
        );
        assert_eq!(
            l.find(Controller::Cpu).unwrap().mountpoint,
            Path::new("/sys/fs/cgroup/cpu")
        );
        let unified = l
            .hierarchies
            .iter()
            .find(|h| h.version == Version::V2)
            .unwrap();
        assert_eq!(unified.controllers, ["hugetlb"]);
    }

    #[test]
    fn test_layout_pure_v2() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = Layout::parse(mi, "0::/user.slice/x\n", &|_| {
            "cpuset cpu io memory pids\n".into()
        });
        let mem = l.find(Controller::Memory).unwrap();
        assert_eq!(mem.version, Version::V2);
        assert_eq!(mem.own_dir, Path::new("/sys/fs/cgroup/user.slice/x"));
        assert!(l.find(Controller::Cpuset).is_some());
    }

    #[test]
    fn test_layout_missing_controller_is_none() {
        let l = Layout::parse(HYBRID, HYBRID_SELF, &|_| "hugetlb".into());
        let v2_only = Layout {
            hierarchies: l
                .hierarchies
                .into_iter()
                .filter(|h| h.version == Version::V2)
                .collect(),
        };
        assert!(v2_only.find(Controller::Memory).is_none());
    }

    #[test]
    fn test_layout_comounted_and_nonroot_mount() {
        let mi =
            "32 31 0:29 /docker/c1 /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let l = Layout::parse(mi, "2:cpu,cpuacct:/docker/c1/sub\n", &|_| String::new());
        let h = l.find(Controller::Cpu).unwrap();
        assert_eq!(h.own_dir, Path::new("/sys/fs/cgroup/cpu,cpuacct/sub"));
    }

    #[test]
    fn test_unescape_octal() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn test_parse_cpu_list() {
        assert_eq!(parse_cpu_list("0-1\n"), [0, 1]);
        assert_eq!(parse_cpu_list("0,2-3,7"), [0, 2, 3, 7]);
        assert!(parse_cpu_list("").is_empty());
    }
}
