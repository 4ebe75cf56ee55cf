//! Everything the init prepares before the workload starts, planned as data (a list of
//! [`Step`]s) and then applied: the init's own /proc, /sys, /dev; the workload root at
//! [`ROOTFS_PATH`] (the rootfs directory served over virtio-9p under a tmpfs overlay);
//! on it the workload's view, which is the sandbox's ([`isol_sandbox::view`]), the very
//! plan container mode applies (/proc, read-only /sys, /dev with the allowed devices,
//! /tmp, volumes, runc's masked and read-only paths, `--read-only`); the workload's
//! cgroup (cgroup2 inside the guest) with the device allow-list; the hostname.

use std::path::{Path, PathBuf};

use isol_sandbox::cgroup::{limit_writes, write, Limits, Version};
use isol_sandbox::syscall::linux::LinuxSyscall;
use isol_sandbox::view::{self, ViewConfig, ViewVolume, VolumeSource};

use crate::protocol::{GuestConfig, Volume, ROOTFS_PATH, ROOT_TAG, VOLUME_MSIZE};
use crate::sys::{self, Ctx, InitError};

/// Where the workload's cgroup lives in the guest.
pub const CGROUP_DIR: &str = "/sys/fs/cgroup/workload";

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

/// One operation of the init's own mounts, or the workload's view.
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
    /// The sandbox's view, applied onto `root` (targets resolved inside it).
    View {
        /// The workload root.
        root: PathBuf,
        /// The view.
        steps: Vec<view::Step>,
    },
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
        mnt("overlay", root, "overlay", NODEV, &overlay),
    ]
}

/// The workload root's mounts, in order: the root bound onto itself (a mount of its
/// own to chroot into), then the sandbox's view on it. `root` is where [`root_plan`]
/// mounted it.
pub fn workload_plan(cfg: &GuestConfig, root: &Path) -> Vec<Step> {
    let volumes: Vec<ViewVolume> = cfg
        .volumes
        .iter()
        .map(|v| ViewVolume {
            path: PathBuf::from(&v.path),
            read_only: v.read_only,
            source: volume_source(v),
        })
        .collect();
    let steps = view::plan(&ViewConfig {
        create: true,
        read_only_root: cfg.read_only,
        volumes: &volumes,
        cwd: Path::new(&cfg.cwd),
        // The workload's own cgroup is mounted by the workload process (spawn), once it
        // has joined it and unshared its cgroup namespace.
        cgroups: &[],
        host_dev: Path::new("/dev"),
    });
    vec![
        mnt(
            &root.to_string_lossy(),
            root,
            "",
            libc::MS_BIND | libc::MS_REC,
            "",
        ),
        Step::View {
            root: root.to_path_buf(),
            steps,
        },
    ]
}

/// A volume the VMM serves over virtio-9p. `access=client`: the guest kernel checks
/// permissions and names the caller's uid, so files keep the owners the workload gives
/// them, as with container mode's bind mounts. `cache=mmap`: no caching (the host may
/// change the directory), except the page cache that shared mmap needs. The view mounts
/// it nosuid,nodev (and read-only), as container mode's binds.
fn volume_source(v: &Volume) -> VolumeSource {
    VolumeSource::Mount {
        source: v.tag.clone(),
        fstype: "9p",
        data: ninep_options("mmap"),
    }
}

/// Mount options of a virtio-9p share from the VMM, with the guest cache mode `cache`.
fn ninep_options(cache: &str) -> String {
    format!("trans=virtio,version=9p2000.L,msize={VOLUME_MSIZE},cache={cache},access=client")
}

/// Applies a plan in order; the first failure stops it. The view binds the init's own
/// /dev/null over masked files (`_dev_null`, the workload's, is no longer needed).
pub fn apply(plan: &[Step], _dev_null: &Path) -> Result<(), InitError> {
    plan.iter().try_for_each(apply_step)
}

fn apply_step(step: &Step) -> Result<(), InitError> {
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
        Step::View { root, steps } => {
            let null = Path::new("/dev/null");
            view::apply(steps, &LinuxSyscall, root, &mut [], null, &mut || Ok(())).map_err(|e| {
                InitError {
                    op: e.step,
                    source: std::io::Error::from_raw_os_error(e.errno as i32),
                }
            })
        }
    }
}

/// Creates the workload's cgroup with the config's limits and the device allow-list (a
/// BPF_CGROUP_DEVICE program, the same as container mode's on cgroup2). Every workload
/// has one.
pub fn cgroup(cfg: &GuestConfig) -> Result<Option<PathBuf>, InitError> {
    let limits = Limits {
        memory: cfg.memory,
        pids: cfg.pids,
        cpu_max: cfg.cpu_max,
        cpuset: None,
    };
    let controllers: Vec<String> = limits
        .controllers()
        .iter()
        .map(|c| format!("+{}", c.name()))
        .collect();
    let root = Path::new("/sys/fs/cgroup");
    sys::mount("cgroup2", root, "cgroup2", NOSUID | NODEV | NOEXEC, "")
        .ctx(|| "mount cgroup2 on /sys/fs/cgroup".into())?;
    let ctl = root.join("cgroup.subtree_control");
    if !controllers.is_empty() {
        std::fs::write(&ctl, controllers.join(" ")).ctx(|| {
            format!(
                "enable {} in {} (is the controller in the guest kernel?)",
                controllers.join(" "),
                ctl.display()
            )
        })?;
    }
    let dir = PathBuf::from(CGROUP_DIR);
    std::fs::create_dir_all(&dir).ctx(|| format!("create cgroup {}", dir.display()))?;
    for c in limits.controllers() {
        for wr in limit_writes(c, Version::V2, &dir, &limits) {
            write(&wr).ctx(|| format!("write {} to {}", wr.value, wr.path.display()))?;
        }
    }
    view::devices::attach_program(&dir)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        .ctx(|| {
            format!(
                "attach the device allow-list to {} (needs CONFIG_CGROUP_BPF)",
                dir.display()
            )
        })?;
    Ok(Some(dir))
}

/// Where the workload root lies.
pub fn rootfs() -> &'static Path {
    Path::new(ROOTFS_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isol_sandbox::syscall::fake::FakeSyscall;

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

    fn view_steps(plan: &[Step]) -> &[view::Step] {
        match plan.last() {
            Some(Step::View { root, steps }) if root == Path::new("/r") => steps,
            other => panic!("the view comes last: {other:?}"),
        }
    }

    /// The view applied onto /r with the recording fake: what the guest init would do.
    fn applied(c: &GuestConfig) -> Vec<String> {
        let plan = workload_plan(c, Path::new("/r"));
        let fake = FakeSyscall::default();
        view::apply(
            view_steps(&plan),
            &fake,
            Path::new("/r"),
            &mut [],
            Path::new("/dev/null"),
            &mut || Ok(()),
        )
        .unwrap();
        fake.changes()
    }

    #[test]
    fn test_workload_plan_binds_the_root_then_applies_the_sandbox_view() {
        let plan = workload_plan(&cfg(), Path::new("/r"));
        assert_eq!(plan.len(), 2);
        assert!(
            matches!(&plan[0], Step::Mount { target, flags, .. } if target == Path::new("/r") && *flags == libc::MS_BIND | libc::MS_REC)
        );
        let log = applied(&cfg());
        assert!(
            log.contains(
                &"mount proc /r/proc proc MsFlags(MS_NOSUID | MS_NODEV | MS_NOEXEC) -".to_string()
            ),
            "{log:#?}"
        );
        assert!(log
            .iter()
            .any(|l| l.starts_with("mount sysfs /r/sys sysfs") && l.contains("MS_RDONLY")));
        assert!(log.contains(&"mount /dev/null /r/dev/null - MsFlags(MS_BIND) -".to_string()));
        assert!(log
            .iter()
            .any(|l| l.starts_with("bind /r/proc/sys /r/proc/sys")));
    }

    #[test]
    fn test_workload_plan_read_only_remounts_root_last() {
        let mut c = cfg();
        c.read_only = true;
        let log = applied(&c);
        assert_eq!(
            log.last().unwrap(),
            "mount - /r/ - MsFlags(MS_RDONLY | MS_NODEV | MS_REMOUNT | MS_BIND) -"
        );
        // /tmp is its own tmpfs, so it stays writable.
        assert!(log
            .iter()
            .any(|l| l.starts_with("mount tmpfs /r/tmp tmpfs")));
        assert!(!applied(&cfg())
            .iter()
            .any(|l| l.starts_with("mount - /r/ ")));
    }

    #[test]
    fn test_workload_plan_creates_cwd_and_volume_dirs_and_mounts_volumes_nosuid_nodev() {
        let log = applied(&cfg());
        let pos = |p: &str| {
            log.iter()
                .position(|l| l.starts_with(p))
                .unwrap_or_else(|| panic!("{p}: {log:#?}"))
        };
        let first_fs = pos("mount proc");
        assert!(pos("mkdir /r/work") < first_fs);
        assert!(pos("mkdir /r/data") < first_fs);
        let vol = &log[pos("mount isolvol0 /r/data 9p")];
        assert!(vol.contains("MS_RDONLY | MS_NOSUID | MS_NODEV"), "{vol}");
        assert!(
            vol.contains("trans=virtio") && vol.contains("access=client"),
            "{vol}"
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
            (mounts[2].1.as_str(), mounts[2].2, mounts[2].3.as_str()),
            (
                "/r",
                libc::MS_NODEV,
                "overlay lowerdir=/isol/lower,upperdir=/isol/rw/upper,workdir=/isol/rw/work"
            )
        );
        // Every mount point and layer directory is made before it is used.
        let pos = |s: &Step| plan.iter().position(|x| x == s).unwrap();
        assert!(pos(&Step::Dir("/isol/rw/work".into())) < plan.len() - 1);
        assert!(pos(&Step::Dir("/r".into())) < plan.len() - 1);
    }
}
