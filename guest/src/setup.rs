//! Everything the init prepares before the workload starts, planned as data (a list of
//! [`Step`]s) and then applied: the init's own /proc, /sys, /dev; the workload root at
//! [`ROOTFS_PATH`] (the rootfs directory served over virtio-9p under a tmpfs overlay) with
//! the same mounts as container mode (/proc, read-only /sys, a small /dev, /tmp, volumes,
//! runc's masked and read-only paths, `--read-only`); the workload's cgroup (cgroup2
//! inside the guest); loopback; the hostname.

use std::path::{Path, PathBuf};

use isol_common::security::{MASKED_PATHS, READONLY_PATHS};

use crate::protocol::{GuestConfig, Volume, ROOTFS_PATH, ROOT_TAG, VOLUME_MSIZE};
use crate::sys::{self, Ctx, InitError};

/// Where the workload's cgroup lives in the guest.
pub const CGROUP_DIR: &str = "/sys/fs/cgroup/workload";

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

/// One mount-namespace operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// mkdir -p.
    Dir(PathBuf),
    /// mount(src, target, fstype, flags, data).
    Mount {
        /// Source ("" for none).
        src: String,
        /// Mount point.
        target: PathBuf,
        /// Filesystem type ("" for bind/remount).
        fstype: String,
        /// MS_* flags.
        flags: libc::c_ulong,
        /// Options.
        data: String,
    },
    /// A character device node (mode, major, minor).
    Node(PathBuf, libc::mode_t, u32, u32),
    /// A symlink (target, link).
    Symlink(String, PathBuf),
    /// Masks a path: an empty read-only tmpfs over a directory, /dev/null over a file,
    /// nothing when absent.
    Mask(PathBuf),
    /// Makes a path read-only if it exists (bind to itself, remount read-only).
    ReadOnly(PathBuf),
}

fn mnt(
    src: &str,
    target: impl Into<PathBuf>,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Step {
    Step::Mount {
        src: src.into(),
        target: target.into(),
        fstype: fstype.into(),
        flags,
        data: data.into(),
    }
}

fn remount_ro(target: &Path, extra: libc::c_ulong) -> Step {
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | extra;
    mnt("", target, "", flags, "")
}

/// The init's own mounts (in the initramfs root).
pub fn system_plan() -> Vec<Step> {
    vec![
        Step::Dir("/dev".into()),
        mnt("devtmpfs", "/dev", "devtmpfs", NOSUID, "mode=0755"),
        Step::Dir("/proc".into()),
        mnt("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC, ""),
        Step::Dir("/sys".into()),
        mnt("sysfs", "/sys", "sysfs", NOSUID | NODEV | NOEXEC, ""),
    ]
}

/// Where the init mounts the rootfs share, and the tmpfs of the overlay's upper layer.
const ROOT_LOWER: &str = "/isol/lower";
const ROOT_RW: &str = "/isol/rw";

/// The workload root at `root`: the rootfs directory, which the VMM serves read-only over
/// virtio-9p ([`ROOT_TAG`]), under an overlay whose upper layer is a tmpfs. The workload
/// may write anywhere and every write is discarded with the VM, as with container mode's
/// overlay; its writes are charged to its memory cgroup. Always an overlay, also for
/// `--read-only` (the workload plan remounts it read-only last): mount points missing
/// from the rootfs (/proc, /tmp, the cwd, volume paths) can then be made.
/// `cache=loose`: the guest keeps the root's pages and dentries, so an exec-heavy
/// workload does not read each binary over 9p again; a file changed on the host during
/// the run may be seen late (volumes are uncached).
pub fn root_plan(root: &Path) -> Vec<Step> {
    let lower = Path::new(ROOT_LOWER);
    let rw = Path::new(ROOT_RW);
    let ninep = ninep_options("loose");
    let overlay = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        rw.join("upper").display(),
        rw.join("work").display()
    );
    vec![
        Step::Dir(lower.into()),
        mnt(ROOT_TAG, lower, "9p", libc::MS_RDONLY, &ninep),
        Step::Dir(rw.into()),
        mnt("tmpfs", rw, "tmpfs", 0, "mode=0755"),
        Step::Dir(rw.join("upper")),
        Step::Dir(rw.join("work")),
        Step::Dir(root.into()),
        mnt("overlay", root, "overlay", 0, &overlay),
    ]
}

/// The workload root's mounts, in order. `root` is where [`root_plan`] mounted it.
pub fn workload_plan(cfg: &GuestConfig, root: &Path) -> Vec<Step> {
    let r = |p: &str| root.join(p.trim_start_matches('/'));
    let mut plan = vec![
        mnt(
            &root.to_string_lossy(),
            root,
            "",
            libc::MS_BIND | libc::MS_REC,
            "",
        ),
        Step::Dir(r(&cfg.cwd)),
    ];
    for dir in ["/proc", "/sys", "/dev", "/tmp"] {
        plan.push(Step::Dir(r(dir)));
    }
    for v in &cfg.volumes {
        plan.push(Step::Dir(r(&v.path)));
    }
    plan.push(mnt("proc", r("/proc"), "proc", NOSUID | NODEV | NOEXEC, ""));
    let sys_flags = NOSUID | NODEV | NOEXEC | libc::MS_RDONLY;
    plan.push(mnt("sysfs", r("/sys"), "sysfs", sys_flags, ""));
    plan.extend(dev_plan(&r("/dev")));
    plan.push(mnt(
        "tmpfs",
        r("/tmp"),
        "tmpfs",
        NOSUID | NODEV,
        "mode=1777",
    ));
    plan.extend(cfg.volumes.iter().map(|v| volume_mount(v, &r(&v.path))));
    plan.extend(MASKED_PATHS.iter().map(|p| Step::Mask(r(p))));
    plan.extend(READONLY_PATHS.iter().map(|p| Step::ReadOnly(r(p))));
    if cfg.read_only {
        plan.push(remount_ro(root, 0));
    }
    plan
}

/// A volume the VMM serves over virtio-9p. `access=client`: the guest kernel checks
/// permissions and names the caller's uid, so files keep the owners the workload gives
/// them, as with container mode's bind mounts. `cache=mmap`: no caching (the host may
/// change the directory), except the page cache that shared mmap needs.
fn volume_mount(v: &Volume, target: &Path) -> Step {
    let flags = if v.read_only { libc::MS_RDONLY } else { 0 };
    mnt(&v.tag, target, "9p", flags, &ninep_options("mmap"))
}

/// Mount options of a virtio-9p share from the VMM, with the guest cache mode `cache`.
fn ninep_options(cache: &str) -> String {
    format!("trans=virtio,version=9p2000.L,msize={VOLUME_MSIZE},cache={cache},access=client")
}

/// A minimal /dev as container mode has: null, zero, full, random, urandom, tty, pts, shm.
fn dev_plan(dev: &Path) -> Vec<Step> {
    let mut plan = vec![mnt(
        "tmpfs",
        dev,
        "tmpfs",
        NOSUID | libc::MS_STRICTATIME,
        "mode=755,size=65536k",
    )];
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        plan.push(Step::Node(dev.join(name), 0o666, major, minor));
    }
    plan.push(Step::Dir(dev.join("pts")));
    plan.push(mnt(
        "devpts",
        dev.join("pts"),
        "devpts",
        NOSUID | NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    ));
    plan.push(Step::Symlink("pts/ptmx".into(), dev.join("ptmx")));
    plan.push(Step::Dir(dev.join("shm")));
    plan.push(mnt(
        "shm",
        dev.join("shm"),
        "tmpfs",
        NOSUID | NODEV | NOEXEC,
        "mode=1777,size=65536k",
    ));
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        plan.push(Step::Symlink(target.into(), dev.join(link)));
    }
    plan
}

/// Applies a plan in order; the first failure stops it.
pub fn apply(plan: &[Step], dev_null: &Path) -> Result<(), InitError> {
    for step in plan {
        apply_step(step, dev_null)?;
    }
    Ok(())
}

fn apply_step(step: &Step, dev_null: &Path) -> Result<(), InitError> {
    match step {
        Step::Dir(p) => {
            std::fs::create_dir_all(p).ctx(|| format!("create directory {}", p.display()))
        }
        Step::Mount {
            src,
            target,
            fstype,
            flags,
            data,
        } => sys::mount(src, target, fstype, *flags, data)
            .ctx(|| format!("mount {src:?} ({fstype}) on {}", target.display())),
        Step::Node(p, mode, major, minor) => {
            sys::mknod_char(p, *mode, *major, *minor)
                .ctx(|| format!("create device {}", p.display()))?;
            // mknod's mode is filtered by the umask; set it exactly.
            std::os::unix::fs::chown(p, Some(0), Some(0))
                .ctx(|| format!("chown {}", p.display()))?;
            let perm = std::os::unix::fs::PermissionsExt::from_mode(*mode);
            std::fs::set_permissions(p, perm).ctx(|| format!("chmod {}", p.display()))
        }
        Step::Symlink(target, link) => std::os::unix::fs::symlink(target, link)
            .ctx(|| format!("create symlink {}", link.display())),
        Step::Mask(p) => mask(p, dev_null),
        Step::ReadOnly(p) => {
            if std::fs::symlink_metadata(p).is_err() {
                return Ok(());
            }
            let s = p.to_string_lossy();
            sys::mount(&s, p, "", libc::MS_BIND | libc::MS_REC, "").ctx(|| format!("bind {s}"))?;
            apply_step(&remount_ro(p, NOSUID | NODEV | NOEXEC), dev_null)
        }
    }
}

fn mask(p: &Path, dev_null: &Path) -> Result<(), InitError> {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return Ok(());
    };
    if meta.is_dir() {
        sys::mount("tmpfs", p, "tmpfs", libc::MS_RDONLY, "size=0")
            .ctx(|| format!("mask {}", p.display()))
    } else {
        let null = dev_null.to_string_lossy();
        sys::mount(&null, p, "", libc::MS_BIND, "").ctx(|| format!("mask {}", p.display()))
    }
}

/// Creates the workload's cgroup with the config's limits; `None` when it has none.
pub fn cgroup(cfg: &GuestConfig) -> Result<Option<PathBuf>, InitError> {
    let mut controllers = Vec::new();
    let mut files = Vec::new();
    if let Some(m) = cfg.memory {
        controllers.push("+memory");
        files.push(("memory.max", m.to_string()));
        files.push(("memory.swap.max", "0".to_string()));
    }
    if let Some(p) = cfg.pids {
        controllers.push("+pids");
        files.push(("pids.max", p.to_string()));
    }
    if let Some((q, p)) = cfg.cpu_max {
        controllers.push("+cpu");
        files.push(("cpu.max", format!("{q} {p}")));
    }
    if controllers.is_empty() {
        return Ok(None);
    }
    let root = Path::new("/sys/fs/cgroup");
    sys::mount("cgroup2", root, "cgroup2", NOSUID | NODEV | NOEXEC, "")
        .ctx(|| "mount cgroup2 on /sys/fs/cgroup".into())?;
    let ctl = root.join("cgroup.subtree_control");
    std::fs::write(&ctl, controllers.join(" ")).ctx(|| {
        format!(
            "enable {} in {} (is the controller in the guest kernel?)",
            controllers.join(" "),
            ctl.display()
        )
    })?;
    let dir = PathBuf::from(CGROUP_DIR);
    std::fs::create_dir_all(&dir).ctx(|| format!("create cgroup {}", dir.display()))?;
    for (name, value) in files {
        let f = dir.join(name);
        if name == "memory.swap.max" && !f.exists() {
            continue; // A kernel without swap support has no swap to limit.
        }
        std::fs::write(&f, &value).ctx(|| format!("write {value} to {}", f.display()))?;
    }
    Ok(Some(dir))
}

/// Brings up the loopback interface.
pub fn loopback() -> Result<(), InitError> {
    // SAFETY: socket takes no pointers.
    let fd =
        sys::cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
            .ctx(|| "open a socket to configure lo".into())?;
    // SAFETY: socket returned a fresh descriptor that we own from here on.
    let _guard = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = libc::c_char::from_ne_bytes([*s]);
    }
    // SAFETY: `req` is a valid ifreq naming "lo" that the kernel fills in.
    sys::cvt(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) })
        .ctx(|| "read the flags of lo".into())?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    // IFF_UP fits in the short flags field.
    #[allow(clippy::cast_possible_truncation)]
    let up = flags | libc::IFF_UP as libc::c_short;
    req.ifr_ifru.ifru_flags = up;
    // SAFETY: `req` is a valid ifreq naming "lo" with the new flags.
    sys::cvt(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) }).ctx(|| "bring lo up".into())?;
    Ok(())
}

/// Where the workload root lies.
pub fn rootfs() -> &'static Path {
    Path::new(ROOTFS_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GuestConfig {
        GuestConfig {
            args: vec!["true".into()],
            cwd: "/work".into(),
            volumes: vec![Volume {
                tag: "isolvol0".into(),
                path: "/data".into(),
                read_only: true,
            }],
            ..GuestConfig::default()
        }
    }

    fn targets(plan: &[Step]) -> Vec<String> {
        plan.iter()
            .filter_map(|s| match s {
                Step::Mount { target, flags, .. } => {
                    Some(format!("{} {flags:#x}", target.display()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn test_workload_plan_read_only_remounts_root_last() {
        let mut c = cfg();
        c.read_only = true;
        let plan = workload_plan(&c, Path::new("/r"));
        let last = plan.last().unwrap();
        assert_eq!(*last, remount_ro(Path::new("/r"), 0));
        // /tmp is its own tmpfs, so it stays writable.
        assert!(targets(&plan).iter().any(|t| t.starts_with("/r/tmp ")));
    }

    #[test]
    fn test_workload_plan_writable_root_has_no_root_remount() {
        let plan = workload_plan(&cfg(), Path::new("/r"));
        assert!(!plan.contains(&remount_ro(Path::new("/r"), 0)));
    }

    #[test]
    fn test_workload_plan_creates_cwd_and_volume_dirs_before_mounting() {
        let plan = workload_plan(&cfg(), Path::new("/r"));
        let pos = |s: &Step| plan.iter().position(|x| x == s).unwrap();
        let first_fs = plan
            .iter()
            .position(|s| matches!(s, Step::Mount { fstype, .. } if fstype == "proc"))
            .unwrap();
        assert!(pos(&Step::Dir("/r/work".into())) < first_fs);
        assert!(pos(&Step::Dir("/r/data".into())) < first_fs);
        let vol = plan
            .iter()
            .find(|s| matches!(s, Step::Mount { fstype, .. } if fstype == "9p"))
            .unwrap();
        let Step::Mount {
            src,
            target,
            flags,
            data,
            ..
        } = vol
        else {
            unreachable!()
        };
        assert_eq!(
            (src.as_str(), target.as_path()),
            ("isolvol0", Path::new("/r/data"))
        );
        assert_eq!(
            *flags,
            libc::MS_RDONLY,
            "a read-only volume is mounted read-only"
        );
        assert!(
            data.contains("trans=virtio") && data.contains("access=client"),
            "{data}"
        );
    }

    #[test]
    fn test_root_plan_overlays_a_tmpfs_on_the_read_only_9p_root() {
        let plan = root_plan(Path::new("/r"));
        let mounts: Vec<(String, String, libc::c_ulong, String)> = plan
            .iter()
            .filter_map(|s| match s {
                Step::Mount {
                    src,
                    target,
                    fstype,
                    flags,
                    data,
                } => Some((
                    src.clone(),
                    target.display().to_string(),
                    *flags,
                    format!("{fstype} {data}"),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            (mounts[0].0.as_str(), mounts[0].2),
            (ROOT_TAG, libc::MS_RDONLY)
        );
        assert!(
            mounts[0].3.starts_with("9p trans=virtio"),
            "{:?}",
            mounts[0]
        );
        assert_eq!(mounts[1].3, "tmpfs mode=0755");
        assert_eq!(
            (mounts[2].1.as_str(), mounts[2].3.as_str()),
            (
                "/r",
                "overlay lowerdir=/isol/lower,upperdir=/isol/rw/upper,workdir=/isol/rw/work"
            )
        );
        // Every mount point and layer directory is made before it is used.
        let pos = |s: &Step| plan.iter().position(|x| x == s).unwrap();
        assert!(pos(&Step::Dir("/isol/rw/work".into())) < plan.len() - 1);
        assert!(pos(&Step::Dir("/r".into())) < plan.len() - 1);
    }

    #[test]
    fn test_workload_plan_sys_read_only_and_proc_masked() {
        let plan = workload_plan(&cfg(), Path::new("/r"));
        assert!(plan.iter().any(|s| matches!(s, Step::Mount { fstype, flags, .. } if fstype == "sysfs" && flags & libc::MS_RDONLY != 0)));
        assert!(plan.contains(&Step::Mask("/r/proc/kcore".into())));
        assert!(plan.contains(&Step::ReadOnly("/r/proc/sys".into())));
    }
}
