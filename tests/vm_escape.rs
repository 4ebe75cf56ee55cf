//! Black-box escape attempts against `isol run --mode vm` volumes (served over virtio-9p),
//! in a real guest: the nested lab on a PVM host, directly on hardware KVM. Each must fail:
//! a host process moving the directory a workload works in out of its volume, a workload
//! renaming a directory out of an inner volume through an outer one that contains it,
//! and a workload planting a set-user-ID file or changing the volume root's mode.
//!
//! The raw-9P attacks a hostile guest kernel could send (walking `..` from a fid whose
//! directory moved, any message sequence) are proven at the server's own interface with
//! real host files: vmm/src/devices/virtio/p9/tests/{escape,policy,fuzz}.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use support::{
    assert_code, in_lab, kvm_kind, require_root, run_isol, stderr, stdout, KvmKind, Mode,
};

/// Runs `sh -c SCRIPT sh ISOL DIR` where VM mode works (inside the lab on a PVM host).
fn host_script(script: &str, dir: &Path) -> Output {
    require_root();
    let isol = support::isol_bin();
    let mut cmd = if !in_lab() && kvm_kind() == KvmKind::Pvm {
        let mut c = support::lab_command();
        c.arg("/bin/sh");
        c
    } else {
        Command::new("/bin/sh")
    };
    cmd.arg("-c").arg(script).arg("sh").arg(isol).arg(dir);
    support::run_lab_retrying_lab_failures(&mut cmd, b"")
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("the test's own directory is readable")
        .map(|e| {
            let name = e.expect("a readable entry").file_name();
            name.into_string().expect("names the test made are UTF-8")
        })
        .collect();
    v.sort();
    v
}

/// A temporary directory under /tmp (the nested lab shares /tmp with the host).
fn tmp() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("a temporary directory under /tmp");
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755))
        .expect("chmod of the test's own directory");
    t
}

#[test]
fn vm_host_moving_the_workloads_directory_out_of_a_volume_shows_nothing_outside() {
    if support::skip_privileged("vm_host_moving_the_workloads_directory_out_of_a_volume") {
        return;
    }
    let t = tmp();
    let d = t.path();
    fs::create_dir_all(d.join("vol/work")).unwrap();
    fs::create_dir(d.join("outside")).unwrap();
    // The workload works in /v/work; once the host has moved that directory out of the
    // volume and put a file in it, the workload looks around.
    let workload = r#"cd /v/work || exit 3
echo in > here; touch /v/ready
i=0; while [ ! -e /v/moved ]; do sleep 0.1; i=$((i+1)); [ $i -gt 3000 ] && exit 4; done
ls 2>/dev/null; echo "ls=$?"
cat here 2>/dev/null; echo "cat-here=$?"
cat outsider 2>/dev/null; echo "cat-outsider=$?"
(echo x > planted) 2>/dev/null; echo "create=$?"
ls /v; echo "ls-volume=$?""#;
    let script = format!(
        r#"D=$2; "$1" run --mode vm --volume "$D/vol:/v" -- sh -c '{workload}' >"$D/out" 2>"$D/err" &
pid=$!; i=0; until [ -e "$D/vol/ready" ]; do sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && break; done
mv "$D/vol/work" "$D/outside/work"; echo leaked > "$D/outside/work/outsider"; touch "$D/vol/moved"
wait $pid; echo "rc=$?"; cat "$D/out""#
    );
    let o = host_script(&script, d);
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "rc=0\nls=1\ncat-here=1\ncat-outsider=1\ncreate=1\nmoved\nready\nls-volume=0\n",
        "stderr: {}\nworkload stderr: {}",
        stderr(&o),
        fs::read_to_string(d.join("err")).unwrap_or_default()
    );
    assert_eq!(names(&d.join("outside/work")), ["here", "outsider"]);
    assert_eq!(fs::read(d.join("outside/work/here")).unwrap(), b"in\n");
    assert_eq!(names(d), ["err", "out", "outside", "vol"]);
}

#[test]
fn vm_nested_volumes_renaming_out_of_the_inner_one_leads_nowhere() {
    if support::skip_privileged("vm_nested_volumes_renaming_out_of_the_inner_one") {
        return;
    }
    let t = tmp();
    let top = t.path();
    let d = top.join("d");
    fs::create_dir_all(d.join("sub/dir")).unwrap();
    fs::write(d.join("sub/dir/f"), b"inner\n").unwrap();
    fs::create_dir(top.join("outside")).unwrap();
    fs::write(top.join("outside/secret"), b"host secret\n").unwrap();
    let a = format!("{}:/a", d.display());
    let b = format!("{}:/b", d.join("sub").display());
    // From inside the inner volume, move its directory out through the outer volume,
    // then look at it and try to climb.
    let workload = r#"cd /b/dir || exit 3
cat f; echo "cat=$?"
mv /a/sub/dir /a/dir2; echo "mv=$?"
ls 2>/dev/null; echo "ls=$?"
cat f 2>/dev/null; echo "cat-moved=$?"
ls ..; echo "ls-up=$?"
cat ../../secret ../../outside/secret ../../../outside/secret 2>/dev/null; echo "climb=$?"
(echo x > planted) 2>/dev/null; echo "create=$?"
ls /a /a/dir2"#;
    let o = run_isol(
        Mode::Vm,
        &["--volume", &a, "--volume", &b, "--", "sh", "-c", workload],
        b"",
    );
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "inner\ncat=0\nmv=0\nls=1\ncat-moved=1\nls-up=0\nclimb=1\ncreate=1\n\
         /a:\ndir2\nsub\n\n/a/dir2:\nf\n",
        "stderr: {}",
        stderr(&o)
    );
    assert_eq!(names(top), ["d", "outside"]);
    assert_eq!(names(&top.join("outside")), ["secret"]);
    assert_eq!(names(&d.join("dir2")), ["f"]);
    assert_eq!(names(&d.join("sub")), Vec::<String>::new());
}

#[test]
fn vm_volume_keeps_no_setuid_file_and_its_root_mode() {
    if support::skip_privileged("vm_volume_keeps_no_setuid_file_and_its_root_mode") {
        return;
    }
    let t = tmp();
    let v = t.path().join("v");
    fs::create_dir(&v).unwrap();
    fs::set_permissions(&v, fs::Permissions::from_mode(0o755)).unwrap();
    let vol = format!("{}:/v", v.display());
    let workload = r#"cp /bin/busybox /v/sh; chmod 4755 /v/sh; echo "chmod-file=$?"
mkdir /v/d; chmod 2777 /v/d; echo "chmod-dir=$?"
stat -c %a /v/sh /v/d
chmod 6777 /v 2>/dev/null; echo "chmod-root=$?"
chown 1000:1000 /v 2>/dev/null; echo "chown-root=$?"
stat -c '%a %u %g' /v"#;
    let o = run_isol(
        Mode::Vm,
        &["--volume", &vol, "--", "sh", "-c", workload],
        b"",
    );
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "chmod-file=0\nchmod-dir=0\n755\n777\nchmod-root=1\nchown-root=1\n755 0 0\n",
        "stderr: {}",
        stderr(&o)
    );
    let sh = fs::metadata(v.join("sh")).unwrap();
    assert_eq!(
        sh.mode() & 0o7777,
        0o755,
        "the host file is not set-user-ID"
    );
    assert_eq!(fs::metadata(v.join("d")).unwrap().mode() & 0o7777, 0o777);
    let root = fs::metadata(&v).unwrap();
    assert_eq!(
        (root.mode() & 0o7777, root.uid(), root.gid()),
        (0o755, 0, 0)
    );
}
