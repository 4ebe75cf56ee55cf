//! Byte sizes as users write them: `64M`, `1G`, `512KiB`, or a plain number of bytes.
//! Units are binary (1K = 1024 bytes), as in docker, runc and the kernel's cgroup files.

/// Parses a size such as `64M`, `1g`, `512KiB`, `2MB` or `1048576` into bytes.
/// Returns `None` for anything else (including overflow), so callers can say what is accepted.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Formats bytes the shortest exact way: `64M`, `1G`, `1536K`, `1000`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        let unit_bytes = 1u64 << shift;
        if bytes >= unit_bytes && bytes % unit_bytes == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_size_units_binary() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("2MB"), Some(2 << 20));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size(" 7 "), Some(7));
    }

    #[test]
    fn test_parse_size_garbage_is_none() {
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("16777216T"), None);
    }

    #[test]
    fn test_format_size_round_trips() {
        for s in ["64M", "1G", "1536K", "1000", "3T"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
    }
}
