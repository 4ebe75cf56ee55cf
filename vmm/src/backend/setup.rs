//! Setup helpers of the VM backend: the guest init, the vCPU check, the fd limit, and the
//! virtio-9p devices of the shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use isol_common::WorkloadSpec;

use super::{plan, VmError, GUEST_INIT_NAME};
use crate::channel::protocol::{volume_tag, ROOT_TAG};
use crate::devices::virtio::device::VIRTIO_IRQS;
use crate::devices::virtio::p9::{P9Server, ServerGroup};
use crate::devices::virtio::{P9Device, RequestHandler, VirtioSlot};

/// The 9P devices in their slots, and the command line fragments declaring them.
pub(super) type P9Devices = (Vec<(VirtioSlot, P9Device)>, String);

/// One share: its virtio slot, mount tag and the server behind it (a [`P9Server`], or
/// the VMM's handle on one in the file server process).
pub(super) struct Share<H> {
    pub slot: VirtioSlot,
    pub tag: String,
    pub server: H,
}

impl<H> Share<H> {
    /// The share without its server, and the server.
    pub fn split(self) -> (Share<()>, H) {
        let Share { slot, tag, server } = self;
        (
            Share {
                slot,
                tag,
                server: (),
            },
            server,
        )
    }

    /// The same share with another server.
    pub fn with<G>(self, server: G) -> Share<G> {
        Share {
            slot: self.slot,
            tag: self.tag,
            server,
        }
    }
}

/// Finds the static guest init; the error says where it looked and how to build it.
pub(super) fn find_guest_init() -> Result<PathBuf, VmError> {
    let exe = std::env::current_exe().ok();
    let candidates = plan::guest_init_candidates(exe.as_deref());
    let mut dynamic = Vec::new();
    for c in &candidates {
        // Only the ELF and program headers are read: this runs on every VM start.
        match isol_common::elf::file_is_static_elf(c) {
            Ok(true) => return Ok(c.clone()),
            Ok(false) => dynamic.push(c.display().to_string()),
            Err(_) => continue,
        }
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    let mut msg = format!(
        "No static guest init ({GUEST_INIT_NAME}) found (looked in: {}); build it with \
         `RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p isol-guest --target x86_64-unknown-linux-gnu` \
         or set ISOL_GUEST_INIT=FILE",
        looked.join(", ")
    );
    if !dynamic.is_empty() {
        msg.push_str(&format!(
            " ({} is dynamically linked and cannot run in the guest)",
            dynamic.join(", ")
        ));
    }
    Err(VmError::GuestInit(msg))
}

/// The vCPU count, refused like container mode's cpuset when it exceeds the CPUs isol may
/// run on: more vCPUs than CPUs only time-slice, and both modes must accept the same specs.
pub(super) fn check_vcpus(spec: &WorkloadSpec, vcpus: u32) -> Result<u8, VmError> {
    let available = host_cpus();
    match u8::try_from(vcpus) {
        Ok(n) if vcpus <= available => Ok(n),
        _ => Err(VmError::TooManyCpus {
            cpus: spec.resources.cpus.unwrap_or(f64::from(vcpus)),
            wanted: vcpus,
            available,
        }),
    }
}

/// The 9P server holds an fd per file the guest has walked to: lift the soft fd limit to
/// the hard one, as Firecracker and QEMU do (failing that, the guest gets EMFILE).
pub(super) fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// CPUs in isol's affinity mask (1 if it cannot be read).
pub(super) fn host_cpus() -> u32 {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX).max(1))
}

/// The 9P servers of the shares: the rootfs, read-only, in slot 0 (the guest mounts
/// [`ROOT_TAG`] under an overlay with a tmpfs upper layer), then one per volume in spec
/// order (volume `i` as `volume_tag(i)` in slot `i + 1`).
///
/// `served(i, host)` is the path share `i` (host directory `host`) is opened at: the host
/// path itself, or its fixed path in the VMM's jail; errors always name the host path.
pub(super) fn p9_servers(
    spec: &WorkloadSpec,
    rootfs: &Path,
    served: &dyn Fn(usize, &Path) -> PathBuf,
) -> Result<Vec<Share<P9Server>>, VmError> {
    let max = VIRTIO_IRQS.len() - 1;
    if spec.volumes.len() > max {
        return Err(VmError::TooManyVolumes {
            count: spec.volumes.len(),
            max,
        });
    }
    let mut shares = vec![(ROOT_TAG.to_string(), rootfs, true)];
    shares.extend(
        spec.volumes
            .iter()
            .enumerate()
            .map(|(i, v)| (volume_tag(i), v.host.as_path(), v.read_only)),
    );
    let mut servers = Vec::with_capacity(shares.len());
    // One lock and one fd budget for all shares of the VM (see p9::group).
    let group = ServerGroup::for_vm();
    for (i, (tag, host, read_only)) in shares.into_iter().enumerate() {
        let err = |source: Box<dyn std::error::Error + Send + Sync>| match i {
            0 => VmError::Rootfs {
                path: host.to_path_buf(),
                source,
            },
            _ => VmError::Volume {
                host: host.to_path_buf(),
                path: spec.volumes[i - 1].path.clone(),
                source,
            },
        };
        let slot = VirtioSlot::new(i).ok_or_else(|| err("no virtio-mmio slot left".into()))?;
        // Checked here, where errors can still name the share.
        P9Device::new(&tag, Box::new(Nothing)).map_err(|e| err(Box::new(e)))?;
        let server = P9Server::in_group(&served(i, host), read_only, Arc::clone(&group))
            .map_err(|e| err(Box::new(e)))?;
        servers.push(Share { slot, tag, server });
    }
    Ok(servers)
}

/// A handler that is never called (the tag check above).
struct Nothing;
impl RequestHandler for Nothing {
    fn handle(&mut self, _: &[u8], _: usize, _: &mut Vec<u8>) {}
}

/// The virtio-9p devices of `shares`, and the command line fragments that declare them.
pub(super) fn p9_devices(shares: Vec<Share<Box<dyn RequestHandler>>>) -> P9Devices {
    let mut devices = Vec::with_capacity(shares.len());
    let mut cmdline = String::new();
    for share in shares {
        // The tag was checked by p9_servers.
        let Ok(device) = P9Device::new(&share.tag, share.server) else {
            continue;
        };
        cmdline.push(' ');
        cmdline.push_str(&share.slot.cmdline());
        devices.push((share.slot, device));
    }
    (devices, cmdline)
}

/// In-process servers as the devices' handlers (`--vmm-jail off`).
pub(super) fn local(shares: Vec<Share<P9Server>>) -> Vec<Share<Box<dyn RequestHandler>>> {
    shares
        .into_iter()
        .map(|s| {
            let server = Box::new(s.server) as Box<dyn RequestHandler>;
            Share {
                slot: s.slot,
                tag: s.tag,
                server,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(_: usize, h: &Path) -> PathBuf {
        h.to_path_buf()
    }

    fn spec_with(volumes: &[&str], cpus: Option<&str>) -> WorkloadSpec {
        let ov = isol_common::Overrides {
            args: vec!["true".into()],
            volumes: volumes.iter().map(|v| v.to_string()).collect(),
            cpus: cpus.map(str::to_string),
            ..isol_common::Overrides::default()
        };
        WorkloadSpec::from_toml("", &ov).unwrap()
    }

    #[test]
    fn test_p9_devices_root_first_then_one_slot_per_volume() {
        let s = spec_with(&["/tmp:/a", "/tmp:/b:ro"], None);
        let servers = p9_servers(&s, Path::new("/tmp"), &host).unwrap();
        let (devices, cmdline) = p9_devices(local(servers));
        assert_eq!(devices.len(), 3);
        let slots: Vec<usize> = devices.iter().map(|(slot, _)| slot.index).collect();
        assert_eq!(slots, [0, 1, 2]);
        assert_eq!(
            cmdline,
            " virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 \
             virtio_mmio.device=4K@0xd0002000:7"
        );
    }

    #[test]
    fn test_p9_devices_refuse_more_volumes_than_the_slots() {
        let vols: Vec<String> = (0..VIRTIO_IRQS.len())
            .map(|i| format!("/tmp:/v{i}"))
            .collect();
        let refs: Vec<&str> = vols.iter().map(String::as_str).collect();
        let e = p9_servers(&spec_with(&refs, None), Path::new("/tmp"), &host)
            .map(drop)
            .unwrap_err();
        assert!(e.to_string().contains("at most 13 volumes"), "{e}");
        let ok = &refs[..VIRTIO_IRQS.len() - 1];
        assert!(p9_servers(&spec_with(ok, None), Path::new("/tmp"), &host).is_ok());
    }

    #[test]
    fn test_p9_devices_missing_rootfs_is_named() {
        let s = spec_with(&[], None);
        let e = p9_servers(&s, Path::new("/nonexistent-isol-rootfs"), &host)
            .map(drop)
            .unwrap_err();
        // In the jail the share is opened at its fixed path, and the error still names
        // the host directory.
        let jailed = |i: usize, _: &Path| crate::jail::share_path(i);
        let j = p9_servers(&s, Path::new("/nonexistent-isol-rootfs"), &jailed)
            .map(drop)
            .unwrap_err();
        assert!(j.to_string().contains("/nonexistent-isol-rootfs"), "{j}");
        assert!(
            e.to_string()
                .contains("root filesystem /nonexistent-isol-rootfs"),
            "{e}"
        );
    }

    #[test]
    fn test_check_vcpus_refuses_more_than_the_host_cpus() {
        let n = host_cpus();
        let s = spec_with(&[], Some(&n.to_string()));
        assert_eq!(check_vcpus(&s, n).unwrap(), u8::try_from(n).unwrap());
        let e = check_vcpus(&s, n + 1).unwrap_err();
        assert!(
            e.to_string().contains(&format!("use --cpus {n} or less")),
            "{e}"
        );
    }
}
