//! The config file the guest init reads from the initramfs: what to run and how.

/// Where the init finds its config in the initramfs.
pub const CONFIG_PATH: &str = "/isol/config";
/// Where the init mounts the workload's root (in the initramfs's tmpfs).
pub const ROOTFS_PATH: &str = "/isol/rootfs";
/// The virtio-9p mount tag of the rootfs directory, which the VMM serves read-only.
pub const ROOT_TAG: &str = "isolroot";
/// First line of the config file (format version).
pub const CONFIG_HEADER: &str = "isol-guest-config 4";
/// The 9P msize the init mounts the root and volumes with. Linux 6.1's virtio transport
/// caps it near 500 KiB (its ring has 128 entries of one page); the VMM's server accepts
/// at least this.
pub const VOLUME_MSIZE: u32 = 256 * 1024;

/// A host directory the VMM serves over virtio-9p, mounted by the init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The virtio-9p mount tag (`isolvolN`).
    pub tag: String,
    /// Where it is mounted inside the workload root.
    pub path: String,
    /// Mounted read-only (the server refuses writes as well).
    pub read_only: bool,
}

/// The mount tag of volume `index`.
pub fn volume_tag(index: usize) -> String {
    format!("isolvol{index}")
}

/// What the init needs to know about the workload. Written by the host into the
/// initramfs as text: the header line, then one `key value` line per field (`arg`, `env`
/// and `volume` repeat, in order), then `end`. Values are percent-escaped ([`escape`]),
/// so any byte string survives and a truncated file is detected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestConfig {
    /// argv; `args[0]` is resolved through the workload's PATH like execvp.
    pub args: Vec<String>,
    /// The workload's complete environment, `(name, value)`.
    pub env: Vec<(String, String)>,
    /// Working directory inside the workload root.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id (supplementary groups are always empty).
    pub gid: u32,
    /// Hostname.
    pub hostname: String,
    /// `/` read-only (`/tmp` stays writable).
    pub read_only: bool,
    /// memory.max of the workload's cgroup in bytes.
    pub memory: Option<u64>,
    /// pids.max of the workload's cgroup.
    pub pids: Option<u64>,
    /// cpu.max of the workload's cgroup: (quota, period) in microseconds.
    pub cpu_max: Option<(u64, u64)>,
    /// Volumes served over virtio-9p, in mount order.
    pub volumes: Vec<Volume>,
    /// Debug mode: without a channel, the init reports on the console.
    pub debug: bool,
    /// The workload's seccomp program (`struct sock_filter` bytes, compiled on the host by
    /// isol-sandbox); `None`: unconfined. Written as hex.
    pub seccomp: Option<Vec<u8>>,
    /// The workload's resource limits: (Linux resource number, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
    /// The workload's oom_score_adj.
    pub oom_score_adj: i32,
}

/// A config file that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bad guest config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Percent-escapes every byte outside `!`..`~` and `%` itself.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`escape`].
pub fn unescape(s: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConfigError(format!("bad escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConfigError(format!("not UTF-8: {s:?}")))
}

impl GuestConfig {
    /// The config file's text.
    pub fn encode(&self) -> String {
        let mut lines = vec![CONFIG_HEADER.to_string()];
        let mut put = |k: &str, v: &str| lines.push(format!("{k} {}", escape(v)));
        for a in &self.args {
            put("arg", a);
        }
        for (k, v) in &self.env {
            put("env", &format!("{k}={v}"));
        }
        put("cwd", &self.cwd);
        put("uid", &self.uid.to_string());
        put("gid", &self.gid.to_string());
        put("hostname", &self.hostname);
        put("read_only", if self.read_only { "1" } else { "0" });
        if let Some(m) = self.memory {
            put("memory", &m.to_string());
        }
        if let Some(p) = self.pids {
            put("pids", &p.to_string());
        }
        if let Some((q, p)) = self.cpu_max {
            put("cpu_max", &format!("{q} {p}"));
        }
        for v in &self.volumes {
            let mode = if v.read_only { "ro" } else { "rw" };
            put("volume", &format!("{mode} {}={}", v.tag, v.path));
        }
        put("debug", if self.debug { "1" } else { "0" });
        if let Some(bpf) = &self.seccomp {
            put(
                "seccomp",
                &bpf.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            );
        }
        for (r, soft, hard) in &self.rlimits {
            put("rlimit", &format!("{r} {soft} {hard}"));
        }
        put("oom_score_adj", &self.oom_score_adj.to_string());
        lines.push("end".to_string());
        lines.join("\n") + "\n"
    }

    /// Parses the config file's text.
    pub fn decode(text: &str) -> Result<GuestConfig, ConfigError> {
        let mut lines = text.lines();
        if lines.next() != Some(CONFIG_HEADER) {
            return Err(ConfigError(format!("first line is not {CONFIG_HEADER:?}")));
        }
        let mut c = GuestConfig::default();
        let mut ended = false;
        for line in lines {
            if ended {
                return Err(ConfigError("text after `end`".into()));
            }
            if line == "end" {
                ended = true;
                continue;
            }
            let (key, raw) = line
                .split_once(' ')
                .ok_or_else(|| ConfigError(format!("line {line:?} has no value")))?;
            c.set(key, &unescape(raw)?)?;
        }
        if !ended {
            return Err(ConfigError("truncated (no `end` line)".into()));
        }
        if c.args.is_empty() {
            return Err(ConfigError("no `arg` line".into()));
        }
        Ok(c)
    }

    fn set(&mut self, key: &str, v: &str) -> Result<(), ConfigError> {
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| ConfigError(format!("{key}: {v:?} is not a number")))
        };
        let pair = |v: &str| {
            v.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| ConfigError(format!("{key}: {v:?} has no '='")))
        };
        match key {
            "arg" => self.args.push(v.to_string()),
            "env" => self.env.push(pair(v)?),
            "cwd" => self.cwd = v.to_string(),
            "uid" => self.uid = to_u32(key, num(v)?)?,
            "gid" => self.gid = to_u32(key, num(v)?)?,
            "hostname" => self.hostname = v.to_string(),
            "read_only" => self.read_only = v == "1",
            "memory" => self.memory = Some(num(v)?),
            "pids" => self.pids = Some(num(v)?),
            "cpu_max" => {
                let (q, p) = v
                    .split_once(' ')
                    .ok_or_else(|| ConfigError(format!("cpu_max: {v:?} is not QUOTA PERIOD")))?;
                self.cpu_max = Some((num(q)?, num(p)?));
            }
            "volume" => {
                let (mode, rest) = v
                    .split_once(' ')
                    .ok_or_else(|| ConfigError(format!("volume: {v:?} is not MODE TAG=PATH")))?;
                let read_only = match mode {
                    "ro" => true,
                    "rw" => false,
                    _ => {
                        return Err(ConfigError(format!(
                            "volume: mode {mode:?} is not ro or rw"
                        )))
                    }
                };
                let (tag, path) = pair(rest)?;
                self.volumes.push(Volume {
                    tag,
                    path,
                    read_only,
                });
            }
            "debug" => self.debug = v == "1",
            "seccomp" => self.seccomp = Some(from_hex(v)?),
            "rlimit" => {
                let bad = || ConfigError(format!("rlimit: {v:?} is not RESOURCE SOFT HARD"));
                let mut it = v.split(' ');
                let mut next = || it.next().ok_or_else(bad).and_then(&num);
                let (r, soft, hard) = (next()?, next()?, next()?);
                self.rlimits.push((to_u32(key, r)?, soft, hard));
            }
            "oom_score_adj" => {
                self.oom_score_adj = v
                    .parse()
                    .map_err(|_| ConfigError(format!("oom_score_adj: {v:?} is not a number")))?;
            }
            _ => return Err(ConfigError(format!("unknown key {key:?}"))),
        }
        Ok(())
    }
}

fn from_hex(v: &str) -> Result<Vec<u8>, ConfigError> {
    let bad = || ConfigError(format!("seccomp: {} bytes of text are not hex", v.len()));
    if v.len() % 2 != 0 {
        return Err(bad());
    }
    (0..v.len())
        .step_by(2)
        .map(|i| v.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

fn to_u32(key: &str, n: u64) -> Result<u32, ConfigError> {
    u32::try_from(n).map_err(|_| ConfigError(format!("{key}: {n} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GuestConfig {
        GuestConfig {
            args: vec![
                "sh".into(),
                "-c".into(),
                "echo 'a b'\n\t%x=y ü".into(),
                String::new(),
            ],
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("X".into(), "a=b c".into()),
                ("EMPTY".into(), String::new()),
            ],
            cwd: "/work dir".into(),
            uid: 1000,
            gid: 100,
            hostname: "h".into(),
            read_only: true,
            memory: Some(64 << 20),
            pids: Some(10),
            cpu_max: Some((50_000, 100_000)),
            volumes: vec![
                Volume {
                    tag: volume_tag(0),
                    path: "/data dir".into(),
                    read_only: true,
                },
                Volume {
                    tag: volume_tag(1),
                    path: "/rw".into(),
                    read_only: false,
                },
            ],
            debug: false,
            seccomp: Some(vec![0x20, 0, 0, 0, 4, 0, 0, 0, 0x06, 0, 0xff, 0x7f]),
            rlimits: vec![(7, 1024, 1024), (4, 0, u64::MAX)],
            oom_score_adj: -17,
        }
    }

    #[test]
    fn test_config_round_trip_keeps_every_byte() {
        let c = sample();
        assert_eq!(GuestConfig::decode(&c.encode()).unwrap(), c);
        let minimal = GuestConfig {
            args: vec!["true".into()],
            ..GuestConfig::default()
        };
        assert_eq!(GuestConfig::decode(&minimal.encode()).unwrap(), minimal);
    }

    #[test]
    fn test_config_lines_have_no_raw_whitespace_in_values() {
        let text = sample().encode();
        for line in text.lines() {
            assert!(line.matches(' ').count() <= 1, "{line:?}");
        }
    }

    #[test]
    fn test_config_truncated_or_garbled_is_error() {
        let text = sample().encode();
        let cut = &text[..text.len() - 4];
        assert!(GuestConfig::decode(cut).is_err());
        assert!(GuestConfig::decode("hello\nend\n").is_err());
        let bad = format!("{CONFIG_HEADER}\narg %G1\nend\n");
        assert!(GuestConfig::decode(&bad).is_err());
        let unknown = format!("{CONFIG_HEADER}\narg x\nfoo 1\nend\n");
        assert!(GuestConfig::decode(&unknown).is_err());
        let no_args = format!("{CONFIG_HEADER}\ncwd /\nend\n");
        assert!(GuestConfig::decode(&no_args).is_err());
    }
}
