//! What the workload's seccomp filter costs a run: getting the default filter (the
//! precompiled program), compiling a profile from JSON text (what `--seccomp FILE` does),
//! and installing it (in forked children, as the workload does).
//!
//! `cargo run --release -p isol-sandbox --example seccomp_cost`

use std::time::{Duration, Instant};

use isol_common::spec::Seccomp;
use isol_sandbox::seccomp::{
    compile_profile, for_spec, install, workload_context, Filter, DEFAULT_PROFILE,
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Installs `f` in a forked child after no_new_privs; returns how long the install took.
fn install_in_child(f: &Filter) -> Duration {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    // SAFETY: the child only makes syscalls, writes to the pipe and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let t = Instant::now();
        let ok = install(f).is_ok();
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let _ = nix::unistd::write(&w, &(if ok { ns } else { u64::MAX }).to_le_bytes());
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut b = [0u8; 8];
    let _ = nix::unistd::read(&r, &mut b);
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    let ns = u64::from_le_bytes(b);
    assert_ne!(ns, u64::MAX, "install failed");
    Duration::from_nanos(ns)
}

fn main() {
    let runs = 50;
    let get: Vec<_> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(for_spec(&Seccomp::Default).expect("default filter"));
            t.elapsed()
        })
        .collect();
    let ctx = workload_context();
    let compile: Vec<_> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(compile_profile(DEFAULT_PROFILE, "d", &ctx).expect("compiles"));
            t.elapsed()
        })
        .collect();
    let f = for_spec(&Seccomp::Default)
        .expect("default filter")
        .expect("not unconfined");
    let inst: Vec<_> = (0..runs).map(|_| install_in_child(&f)).collect();
    println!("default filter: {} instructions", f.len());
    println!(
        "get the default filter (precompiled): median {:?}",
        median(get)
    );
    println!(
        "compile default.json from text:       median {:?}",
        median(compile)
    );
    println!(
        "install (fork child, after NNP):      median {:?}",
        median(inst)
    );
}
