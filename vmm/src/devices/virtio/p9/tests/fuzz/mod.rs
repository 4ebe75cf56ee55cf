//! Fixed-seed fuzzing on stable Rust: a seeded, structure-aware generator of 9P requests
//! (plausible fields, then random mutations) and oracles checked after every reply.
//!
//! - `test_fuzz_requests_never_panic_and_replies_stay_framed_and_bounded`: one server,
//!   random and mutated requests; every reply framed and within the capacity, nothing
//!   outside the root touched.
//! - [`nested`]: request *sequences* on two servers with nested roots sharing one
//!   [`ServerGroup`](crate::devices::virtio::p9::ServerGroup), with host-side renames
//!   (out of the shares, between them, a directory replaced by a symlink) between
//!   requests; see its oracles there.
//!
//! Both run a fixed amount of work in the suite (a few seconds). For a longer run, give a
//! time budget in seconds; the nested fuzzer then runs seed after seed until it is spent
//! and prints how many requests it sent:
//!
//! ```text
//! ISOL_FUZZ_SECS=600 cargo test -p isol-vmm --lib p9::tests::fuzz -- --nocapture
//! ```

mod nested;

use super::*;

/// xorshift64*: a tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const NAMES: &[&[u8]] = &[
    b"a", b"b", b"d", b"l", b"f", b"..", b".", b"", b"x/y", b"fifo", b"in", b"e", b"..", b"d",
];
const TYPES: &[u8] = &[
    t::VERSION,
    t::ATTACH,
    t::WALK,
    t::CLUNK,
    t::LOPEN,
    t::LCREATE,
    t::READ,
    t::WRITE,
    t::READDIR,
    t::GETATTR,
    t::SETATTR,
    t::MKDIR,
    t::SYMLINK,
    t::MKNOD,
    t::RENAME,
    t::RENAMEAT,
    t::UNLINKAT,
    t::REMOVE,
    t::LINK,
    t::READLINK,
    t::STATFS,
    t::FSYNC,
    t::LOCK,
    t::GETLOCK,
    t::XATTRWALK,
    t::XATTRCREATE,
    t::FLUSH,
];

/// A request of type `ty` whose fields are plausible: small fids, names from [`NAMES`],
/// random numbers elsewhere.
fn plausible(rng: &mut Rng, ty: u8) -> Vec<u8> {
    let mut e = Enc::default();
    // Field kinds: f = fid, n = name, 4/8 = random u32/u64, c = count, m = mode.
    let shape: &str = match ty {
        t::VERSION => "Vn",
        t::ATTACH => "fNnn4",
        t::WALK => "ffW",
        t::LCREATE => "fnomg",
        t::READ | t::READDIR => "f8c",
        t::WRITE => "f8D",
        t::SETATTR => "f4m4488888",
        t::MKDIR => "fnmg",
        t::SYMLINK => "fnng",
        t::MKNOD => "fnm44g",
        t::RENAME | t::LINK => "ffn",
        t::RENAMEAT => "fnfn",
        t::UNLINKAT => "fnu",
        t::LOPEN => "fo",
        t::LOCK => "f14884n",
        t::GETLOCK => "f1884n",
        t::GETATTR => "f8",
        t::XATTRWALK => "ffn",
        t::XATTRCREATE => "fn84",
        t::FLUSH => "2",
        _ => "f4",
    };
    for k in shape.chars() {
        e = match k {
            'f' => e.u32(rng.below(5) as u32),
            'n' => e.s(rng.pick::<&[u8]>(NAMES)),
            'N' => e.u32(wire::NOFID),
            'V' => e.u32(rng.below(1 << 20) as u32),
            'W' => {
                let n = rng.below(4) as u16;
                let mut e = e.u16(n);
                for _ in 0..n {
                    e = e.s(rng.pick::<&[u8]>(NAMES));
                }
                e
            }
            'o' => e.u32(*rng.pick(&[0, 1, 2, 0o1002, 0o2001, 0o200000, 3, u32::MAX])),
            'm' => e.u32(*rng.pick(&[0o644, 0o40755, 0o10644, 0o20644, 0o140644, 0o7777])),
            'g' => e.u32(rng.below(3) as u32),
            'u' => e.u32(*rng.pick(&[0, 0, 0x200, 1])),
            'c' => e.u32(*rng.pick(&[0, 1, 30, 4096, u32::MAX])),
            'D' => {
                let n = rng.below(40) as u32;
                let mut e = e.u32(n);
                e.0.extend((0..n).map(|i| i as u8));
                e
            }
            '1' => e.u8(rng.next() as u8),
            '2' => e.u16(rng.next() as u16),
            // Offsets and sizes stay small so the fuzz does not make huge sparse files.
            '8' => e.u64(*rng.pick(&[0, 1, 100, u64::MAX])),
            _ => e.u32(rng.next() as u32),
        };
    }
    msg(ty, TAG, &e.0)
}

/// Flips, truncates or extends `m` at random.
fn mutate(rng: &mut Rng, mut m: Vec<u8>) -> Vec<u8> {
    match rng.below(4) {
        0 => m,
        1 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(m.len() as u64) as usize;
                m[i] = rng.next() as u8;
            }
            m
        }
        2 => {
            m.truncate(rng.below(m.len() as u64 + 1) as usize);
            m
        }
        _ => {
            m.extend((0..rng.below(16)).map(|_| rng.next() as u8));
            m
        }
    }
}

#[test]
fn test_fuzz_requests_never_panic_and_replies_stay_framed_and_bounded() {
    let mut c = Client::new();
    std::fs::write(c.path("f"), b"content").unwrap();
    std::fs::create_dir(c.path("d")).unwrap();
    std::os::unix::fs::symlink("../secret", c.path("l")).unwrap();
    nix::unistd::mkfifo(
        &c.path("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..6000 {
        let req = match rng.below(8) {
            0 => (0..rng.below(40)).map(|_| rng.next() as u8).collect(),
            _ => {
                let ty = *rng.pick(TYPES);
                let m = plausible(&mut rng, ty);
                mutate(&mut rng, m)
            }
        };
        let cap = *rng.pick(&[0, 5, 11, 20, 64, 300, 4096, 1 << 20]);
        let reply = c.raw(&req, cap);
        assert!(
            reply.len() <= cap,
            "iteration {i}: reply {} > cap {cap}",
            reply.len()
        );
        if cap < wire::LERROR_LEN {
            continue;
        }
        assert!(reply.len() >= HEADER_LEN, "iteration {i}");
        let size = u32::from_le_bytes(reply[..4].try_into().unwrap()) as usize;
        assert_eq!(size, reply.len(), "iteration {i}: size field");
        if req.len() >= HEADER_LEN && reply[4] != RLERROR {
            assert_eq!(reply[4], req[4] + 1, "iteration {i}: reply type");
            assert_eq!(reply[5..7], req[5..7], "iteration {i}: tag");
        }
        if i % 500 == 0 {
            // Keep fids to work on after a Tversion or clunks.
            let _ = c.attach(0, 0);
        }
    }
    c.assert_outside_untouched();
    let secret = lstat(&c.outer.join("secret"));
    assert_eq!(
        std::os::unix::fs::MetadataExt::mode(&secret) & 0o7777,
        0o644
    );
}
