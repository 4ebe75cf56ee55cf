//! Seccomp profiles in the OCI runtime-spec / Docker JSON format, parsed and resolved for
//! x86_64 and the workload's capabilities.
//!
//! Accepted: `defaultAction`, `defaultErrnoRet`, `architectures`, Docker's `archMap`, and
//! `syscalls[]` with `names` (or Docker's old `name`), `action`, `errnoRet`, `args[]`
//! (`index`, `value`, `valueTwo`, `op`), `comment`, and Docker's `includes`/`excludes`
//! (`caps`, `arches`, `minKernel`), so Docker's own `default.json` loads as it is. Unknown
//! fields, actions, operators and architectures are errors naming the field.
//! `SCMP_ACT_NOTIFY`, `listenerPath` and `flags` are refused: isol has no seccomp agent.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::syscalls;

/// What the filter does with a syscall (libseccomp's actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// SCMP_ACT_KILL_PROCESS.
    KillProcess,
    /// SCMP_ACT_KILL / SCMP_ACT_KILL_THREAD.
    KillThread,
    /// SCMP_ACT_TRAP: SIGSYS.
    Trap,
    /// SCMP_ACT_ERRNO with this errno.
    Errno(u16),
    /// SCMP_ACT_TRACE with this message number.
    Trace(u16),
    /// SCMP_ACT_LOG: allowed and logged.
    Log,
    /// SCMP_ACT_ALLOW.
    Allow,
}

/// A comparison of one syscall argument (libseccomp's `SCMP_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `arg & mask == value`
    MaskedEq {
        /// The mask (the profile's `value`).
        mask: u64,
    },
}

/// One argument condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    /// Argument index, 0 to 5.
    pub index: u8,
    /// The comparison.
    pub op: Op,
    /// The value compared with (the profile's `valueTwo` for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
}

/// A resolved profile: for each action, the syscalls it applies to and their conditions
/// (an empty condition list means "always"; several lists are or'ed, conditions in one
/// list and'ed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Action for every syscall no rule matches.
    pub default: Action,
    /// action -> syscall number -> alternatives of and'ed conditions.
    pub rules: BTreeMap<Action, BTreeMap<i64, Vec<Vec<Cond>>>>,
}

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not JSON, or fields of the wrong type or unknown (serde_json's message, which names
    /// the field, line and column).
    #[error("{0}")]
    Json(String),
    /// A field has a bad value.
    #[error("{field}: {value:?} {problem}; {hint}")]
    Field {
        /// Where (`syscalls[3].action`).
        field: String,
        /// The bad value.
        value: String,
        /// What is wrong.
        problem: &'static str,
        /// What is accepted.
        hint: String,
    },
}

fn bad(field: String, value: impl ToString, problem: &'static str, hint: &str) -> ProfileError {
    ProfileError::Field {
        field,
        value: value.to_string(),
        problem,
        hint: hint.to_string(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProfileFile {
    #[serde(default)]
    comment: Option<String>,
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMapFile>,
    #[serde(default)]
    flags: Vec<String>,
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Vec<SyscallFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArchMapFile {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SyscallFile {
    #[serde(default)]
    names: Vec<String>,
    name: Option<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<ArgFile>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArgFile {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

const ACTIONS: &str = "use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD, \
                       SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG";
const OPS: &str = "use SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, \
                   SCMP_CMP_GT or SCMP_CMP_MASKED_EQ";
/// libseccomp's architecture names isol accepts in a profile. Only x86_64 is compiled;
/// X86 and X32 are accepted so Docker's profile loads, and are denied anyway.
const ARCHES: &[&str] = &[
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_LOONGARCH64",
];
/// Docker's `includes.arches` / `excludes.arches` names for this machine (Go's GOARCH).
const THIS_ARCH: &[&str] = &["amd64", "x86_64"];

/// What the workload is, for Docker's `includes`/`excludes`.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Names of the capabilities the workload keeps (`CAP_CHOWN`...).
    pub caps: &'a [&'a str],
    /// The kernel's (major, minor) version.
    pub kernel: (u32, u32),
}

fn parse_action(field: &str, name: &str, errno: Option<u32>) -> Result<Action, ProfileError> {
    let data = |default: u32| -> Result<u16, ProfileError> {
        let v = errno.unwrap_or(default);
        u16::try_from(v).ok().filter(|v| *v <= 4095).ok_or_else(|| {
            bad(
                format!("{field} errnoRet"),
                v,
                "is out of range",
                "0 to 4095",
            )
        })
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(data(libc::EPERM as u32)?),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_TRACE" => Action::Trace(data(libc::EPERM as u32)?),
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_NOTIFY" => {
            return Err(bad(
                field.into(),
                name,
                "is not supported",
                "isol has no seccomp agent; use another action",
            ))
        }
        _ => return Err(bad(field.into(), name, "is not a seccomp action", ACTIONS)),
    })
}

fn parse_cond(field: &str, a: &ArgFile) -> Result<Cond, ProfileError> {
    let index = u8::try_from(a.index)
        .ok()
        .filter(|i| *i <= 5)
        .ok_or_else(|| {
            bad(
                format!("{field}.index"),
                a.index,
                "is not an argument",
                "0 to 5",
            )
        })?;
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_NE" => (Op::Ne, a.value),
        "SCMP_CMP_LT" => (Op::Lt, a.value),
        "SCMP_CMP_LE" => (Op::Le, a.value),
        "SCMP_CMP_EQ" => (Op::Eq, a.value),
        "SCMP_CMP_GE" => (Op::Ge, a.value),
        "SCMP_CMP_GT" => (Op::Gt, a.value),
        "SCMP_CMP_MASKED_EQ" => (Op::MaskedEq { mask: a.value }, a.value_two),
        other => {
            return Err(bad(
                format!("{field}.op"),
                other,
                "is not a comparison",
                OPS,
            ))
        }
    };
    Ok(Cond { index, op, value })
}

fn kernel_at_least(field: &str, min: &str, kernel: (u32, u32)) -> Result<bool, ProfileError> {
    let mut parts = min.split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Ok(kernel >= (major, minor)),
        _ => Err(bad(
            field.into(),
            min,
            "is not a kernel version",
            "e.g. \"4.8\"",
        )),
    }
}

/// Whether Docker's `includes`/`excludes` let entry `field` apply to this workload.
fn applies(field: &str, e: &SyscallFile, ctx: &Context) -> Result<bool, ProfileError> {
    let has_arch = |arches: &[String]| arches.iter().any(|a| THIS_ARCH.contains(&a.as_str()));
    let inc = &e.includes;
    if !inc.arches.is_empty() && !has_arch(&inc.arches) {
        return Ok(false);
    }
    if !inc.caps.iter().all(|c| ctx.caps.contains(&c.as_str())) {
        return Ok(false);
    }
    if let Some(min) = &inc.min_kernel {
        if !kernel_at_least(&format!("{field}.includes.minKernel"), min, ctx.kernel)? {
            return Ok(false);
        }
    }
    let exc = &e.excludes;
    if has_arch(&exc.arches) || exc.caps.iter().any(|c| ctx.caps.contains(&c.as_str())) {
        return Ok(false);
    }
    if let Some(min) = &exc.min_kernel {
        if kernel_at_least(&format!("{field}.excludes.minKernel"), min, ctx.kernel)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn check_arches(f: &ProfileFile) -> Result<(), ProfileError> {
    let mut all: Vec<(String, &str)> = Vec::new();
    for (i, a) in f.architectures.iter().enumerate() {
        all.push((format!("architectures[{i}]"), a));
    }
    for (i, m) in f.arch_map.iter().enumerate() {
        all.push((format!("archMap[{i}].architecture"), &m.architecture));
        for (j, s) in m.sub_architectures.iter().enumerate() {
            all.push((format!("archMap[{i}].subArchitectures[{j}]"), s));
        }
    }
    for (field, a) in &all {
        if !ARCHES.contains(a) {
            return Err(bad(
                field.clone(),
                a,
                "is not an architecture",
                "use libseccomp's names, e.g. SCMP_ARCH_X86_64",
            ));
        }
    }
    if !all.is_empty() && !all.iter().any(|(_, a)| *a == "SCMP_ARCH_X86_64") {
        return Err(bad(
            "architectures".into(),
            f.architectures.join(","),
            "does not include SCMP_ARCH_X86_64",
            "isol runs x86_64 workloads; add SCMP_ARCH_X86_64",
        ));
    }
    Ok(())
}

/// Parses a profile's JSON text and resolves it for `ctx`.
pub fn parse(text: &str, ctx: &Context) -> Result<Profile, ProfileError> {
    let f: ProfileFile =
        serde_json::from_str(text).map_err(|e| ProfileError::Json(e.to_string()))?;
    let _ = &f.comment;
    if let Some(p) = &f.listener_path {
        return Err(bad(
            "listenerPath".into(),
            p,
            "is not supported",
            "isol has no seccomp agent; remove it",
        ));
    }
    if let Some(flag) = f.flags.first() {
        return Err(bad(
            "flags".into(),
            flag,
            "is not supported",
            "remove flags",
        ));
    }
    check_arches(&f)?;
    let default = parse_action("defaultAction", &f.default_action, f.default_errno_ret)?;
    let mut rules: BTreeMap<Action, BTreeMap<i64, Vec<Vec<Cond>>>> = BTreeMap::new();
    for (i, e) in f.syscalls.iter().enumerate() {
        let field = format!("syscalls[{i}]");
        let action = parse_action(&format!("{field}.action"), &e.action, e.errno_ret)?;
        let conds = e
            .args
            .iter()
            .enumerate()
            .map(|(j, a)| parse_cond(&format!("{field}.args[{j}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        if e.names.is_empty() && e.name.is_none() {
            return Err(bad(
                format!("{field}.names"),
                "",
                "is empty",
                "name a syscall",
            ));
        }
        if !applies(&field, e, ctx)? {
            continue;
        }
        let _ = &e.comment;
        for name in e.names.iter().chain(&e.name) {
            // Names of other architectures (chown32, _llseek...) have no rule here.
            let Some(nr) = syscalls::number(name) else {
                continue;
            };
            let alts = rules.entry(action).or_default().entry(nr).or_default();
            if conds.is_empty() {
                // "Always" makes the other alternatives moot; kept as one empty list.
                alts.clear();
                alts.push(Vec::new());
            } else if !alts.iter().any(Vec::is_empty) {
                alts.push(conds.clone());
            }
        }
    }
    Ok(Profile { default, rules })
}
