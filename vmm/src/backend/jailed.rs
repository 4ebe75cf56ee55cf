//! The VM backend's jailed path (the default): isol forks the VMM into its jail
//! ([`crate::jail`]); the VMM builds the machine there from the jail's fixed paths,
//! drops its privileges, says it is ready and, on isol's go, runs the VM and reports the
//! workload's exit (or its error, rendered as isol prints errors).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use isol_common::exit::EXIT_ISOL_ERROR;
use isol_common::{WorkloadExit, WorkloadSpec};

use super::rundir::RunDir;
use super::setup::{self, Share};
use super::{build, Parts, VmError};
use crate::devices::virtio::RequestHandler;
use crate::jail::cgroup::VmmCgroup;
use crate::jail::{self, ChildLink, JailSpec, Jailed, Message};

/// The jail's directory inside the run directory (empty on the host; the VMM mounts its
/// root there in its own mount namespace).
pub(super) const JAIL_DIR: &str = "jail";

/// Starts the jailed VMM and waits until its machine is set up.
pub(super) fn spawn_vm(
    spec: &WorkloadSpec,
    parts: Parts,
    dir: &RunDir,
) -> Result<(Jailed, VmmCgroup), VmError> {
    jail::check_pvm(&parts.kernel, parts.allow_pvm).map_err(VmError::Machine)?;
    let root = dir.path().join(JAIL_DIR);
    std::fs::create_dir(&root).map_err(|source| VmError::RunDir {
        path: root.clone(),
        source,
    })?;
    let name = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroup = VmmCgroup::create(&name, parts.memory, parts.vcpus).map_err(VmError::Jail)?;
    let rootfs = spec.rootfs.as_deref().ok_or(VmError::NoRootfs)?;
    let mut shares: Vec<(PathBuf, bool)> = vec![(rootfs.to_path_buf(), true)];
    shares.extend(spec.volumes.iter().map(|v| (v.host.clone(), v.read_only)));
    let binds = jail::binds(&parts.kernel, Some(&parts.initrd), &shares);
    let keep_fds = parts.log.iter().map(AsRawFd::as_raw_fd).collect();
    let jspec = JailSpec {
        root: &root,
        binds,
        keep_fds,
        cgroup: Some(&cgroup),
    };
    let mut jailed =
        jail::spawn(&jspec, move |link| vmm_main(spec, parts, link)).map_err(VmError::Jail)?;
    match jailed.wait_ready().map_err(VmError::Jail)? {
        None => Ok((jailed, cgroup)),
        Some(text) => Err(VmError::InJail(text)),
    }
}

/// The jailed VMM: runs in the jail, returns its process's exit code.
fn vmm_main(spec: &WorkloadSpec, mut parts: Parts, link: &mut ChildLink) -> i32 {
    parts.kernel = PathBuf::from(jail::KERNEL);
    parts.initrd = PathBuf::from(jail::INITRD);
    parts.allow_pvm = true; // checked by isol (spawn_vm)
    let isol_pid = link.isol_pid;
    let seccomp = parts.seccomp;
    let shares = (|| {
        let rootfs = spec.rootfs.as_deref().ok_or(VmError::NoRootfs)?;
        let served = |i: usize, _: &Path| jail::share_path(i);
        let servers = setup::p9_servers(spec, rootfs, &served)?;
        let count = servers.len();
        let (shares, servers): (Vec<_>, Vec<_>) = servers.into_iter().map(Share::split).unzip();
        // The file server takes the shares and their capabilities; the VMM keeps none.
        let remote = jail::files::spawn(servers, isol_pid, seccomp).map_err(VmError::Jail)?;
        jail::files::hide_shares(count).map_err(VmError::Jail)?;
        let shares: Vec<setup::Share<Box<dyn RequestHandler>>> = shares
            .into_iter()
            .zip(remote)
            .map(|(s, r)| s.with(Box::new(r) as Box<dyn RequestHandler>))
            .collect();
        Ok::<_, VmError>(shares)
    })();
    let lock_down = || jail::drop_privileges(isol_pid).map_err(VmError::Jail);
    let vm = match shares.and_then(|shares| build(parts, shares, &lock_down)) {
        Ok(vm) => vm,
        Err(e) => {
            link.send(&Message::Error(ChildLink::error_text(&e)));
            return EXIT_ISOL_ERROR;
        }
    };
    link.send(&Message::Ready);
    if !link.wait_go() {
        return EXIT_ISOL_ERROR;
    }
    match vm.run() {
        Ok(exit) => link.send(&Message::Exit(exit)),
        Err(e) => link.send(&Message::Error(ChildLink::error_text(&e))),
    }
    0
}

/// Lets the jailed VMM run; its report.
pub(super) fn run(jailed: Jailed) -> Result<WorkloadExit, VmError> {
    match jailed.run().map_err(VmError::Jail)? {
        Message::Exit(exit) => Ok(exit),
        Message::Error(text) => Err(VmError::InJail(text)),
        other => Err(VmError::InJail(format!(
            "The jailed VMM sent an unexpected message: {other:?}"
        ))),
    }
}
