//! Where a fid is: a path *relative to the share's root*, made of validated names only.
//!
//! `..` is a lexical pop that stops at the root, so no sequence of walks can name anything
//! above the root, whatever the host or another share did to the tree since: the path is
//! re-resolved from the root fd with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` on
//! every use (see [`super::root`]). This is how QEMU's 9p server keeps fids too (a path per
//! fid, rewritten when the client renames one of its prefixes).

use nix::errno::Errno;

use super::host::{NAME_MAX, PATH_MAX};

/// A relative path from the share's root: empty for the root, else `name(/name)*`, every
/// name passed [`check_name`]; shorter than `PATH_MAX` bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharePath(Vec<u8>);

/// Validates one name the client asks the server to create, remove or look up: not empty,
/// no `/` or NUL, not `.` or `..`, at most `NAME_MAX` bytes.
pub fn check_name(name: &[u8]) -> Result<&[u8], Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    if name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(name)
}

impl SharePath {
    /// The root itself.
    pub fn root() -> SharePath {
        SharePath(Vec::new())
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as bytes for `openat2` relative to the root fd (`.` for the root).
    pub fn as_bytes(&self) -> &[u8] {
        if self.0.is_empty() {
            b"."
        } else {
            &self.0
        }
    }

    /// How many bytes this path holds (for the fid table's memory bound).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `self/name`, for a name that passes [`check_name`]; `ENAMETOOLONG` at `PATH_MAX`.
    pub fn join(&self, name: &[u8]) -> Result<SharePath, Errno> {
        let name = check_name(name)?;
        let sep = usize::from(!self.0.is_empty());
        if self.0.len() + sep + name.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut v = Vec::with_capacity(self.0.len() + sep + name.len());
        v.extend_from_slice(&self.0);
        if sep == 1 {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        Ok(SharePath(v))
    }

    /// One walk step: `..` pops a name (the root's `..` is the root), anything else must
    /// pass [`check_name`] and is appended.
    pub fn step(&self, name: &[u8]) -> Result<SharePath, Errno> {
        if name == b".." {
            Ok(self.split().map_or_else(SharePath::root, |(dir, _)| dir))
        } else {
            self.join(name)
        }
    }

    /// The parent and the last name, or `None` for the root.
    pub fn split(&self) -> Option<(SharePath, &[u8])> {
        if self.0.is_empty() {
            return None;
        }
        Some(match memchr::memrchr(b'/', &self.0) {
            Some(i) => (SharePath(self.0[..i].to_vec()), &self.0[i + 1..]),
            None => (SharePath::root(), &self.0[..]),
        })
    }

    /// After `old` was renamed to `new`: the new path of `self` if it is `old` or below it.
    pub fn rebase(&self, old: &SharePath, new: &SharePath) -> Option<SharePath> {
        if old.is_root() {
            return None;
        }
        let rest = self.0.strip_prefix(old.0.as_slice())?;
        if !(rest.is_empty() || rest[0] == b'/') {
            return None;
        }
        let mut v = new.0.clone();
        v.extend_from_slice(rest);
        if new.is_root() && !rest.is_empty() {
            v.remove(0);
        }
        Some(SharePath(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SharePath {
        s.split('/')
            .filter(|n| !n.is_empty())
            .try_fold(SharePath::root(), |acc, n| acc.join(n.as_bytes()))
            .unwrap()
    }

    #[test]
    fn test_check_name_rejects_bad_names() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(check_name(&[b'x'; 256]), Err(Errno::ENAMETOOLONG));
        assert!(check_name(&[b'x'; 255]).is_ok());
        assert!(check_name(b"..a").is_ok());
    }

    #[test]
    fn test_share_path_dotdot_is_a_lexical_pop_clamped_at_root() {
        let a_b = p("a/b");
        assert_eq!(a_b.as_bytes(), b"a/b");
        assert_eq!(a_b.step(b"..").unwrap(), p("a"));
        assert_eq!(p("a").step(b"..").unwrap(), SharePath::root());
        assert_eq!(SharePath::root().step(b"..").unwrap(), SharePath::root());
        assert_eq!(SharePath::root().as_bytes(), b".");
        assert_eq!(a_b.step(b"x/y"), Err(Errno::EINVAL));
        assert_eq!(a_b.step(b"."), Err(Errno::EINVAL));
    }

    #[test]
    fn test_share_path_never_reaches_path_max() {
        let name = [b'x'; 255];
        let mut path = SharePath::root();
        while let Ok(next) = path.join(&name) {
            path = next;
        }
        assert!(path.len() < PATH_MAX);
        assert_eq!(path.join(&name), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn test_share_path_rebase_moves_only_the_prefix_and_below() {
        let (old, new) = (p("a/b"), p("c"));
        assert_eq!(p("a/b").rebase(&old, &new), Some(p("c")));
        assert_eq!(p("a/b/x/y").rebase(&old, &new), Some(p("c/x/y")));
        assert_eq!(p("a/bc").rebase(&old, &new), None);
        assert_eq!(p("a").rebase(&old, &new), None);
        assert_eq!(SharePath::root().rebase(&SharePath::root(), &new), None);
        assert_eq!(p("a/b/x").split().unwrap(), (p("a/b"), &b"x"[..]));
        assert_eq!(p("x").split().unwrap(), (SharePath::root(), &b"x"[..]));
        assert!(SharePath::root().split().is_none());
    }
}
