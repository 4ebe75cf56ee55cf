//! Ports a booting Linux pokes that need no real device: answered quietly so they do not
//! fill the debug log. Absent devices read as all ones (the ISA "nothing here" value).

use std::time::{SystemTime, UNIX_EPOCH};

use super::bus::BusDevice;

/// Quiet port ranges: (base, length, what it is). Reads all ones, writes ignored.
pub const QUIET_RANGES: &[(u16, u16, &str)] = &[
    (0x80, 1, "POST debug port"),
    (0x87, 1, "DMA page register"),
    (0xed, 1, "delay port"),
    (0x4d0, 2, "PIC ELCR"),
    (0x2e8, 8, "COM4 (absent)"),
    (0x2f8, 8, "COM2 (absent)"),
    (0x3e8, 8, "COM3 (absent)"),
    (0xcf8, 8, "PCI config (no PCI bus)"),
];

/// A range of ports where nothing is.
#[derive(Debug, Default)]
pub struct Quiet;

impl BusDevice for Quiet {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

/// CMOS/RTC index port; the data port is base + 1.
pub const CMOS_BASE: u16 = 0x70;

/// A minimal CMOS: the RTC reads the host's UTC time (BCD, 24 h), no update in progress;
/// everything else reads 0. Writes only select the index.
#[derive(Debug, Default)]
pub struct Cmos {
    index: u8,
}

impl Cmos {
    fn register(&self, now_secs: u64) -> u8 {
        let days = now_secs / 86_400;
        let secs = now_secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let bcd = |v: u64| -> u8 { (((v / 10) % 10) << 4 | (v % 10)) as u8 };
        match self.index & 0x7f {
            0x00 => bcd(secs % 60),
            0x02 => bcd(secs / 60 % 60),
            0x04 => bcd(secs / 3600),
            0x06 => bcd((days + 4) % 7 + 1),
            0x07 => bcd(d),
            0x08 => bcd(m),
            0x09 => bcd(y % 100),
            0x32 => bcd(y / 100),
            0x0a => 0x26, // divider on, no update in progress
            0x0b => 0x02, // 24-hour, BCD
            0x0d => 0x80, // RTC power good
            _ => 0,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for b in data.iter_mut() {
            *b = if offset == 1 {
                self.register(now)
            } else {
                0xff
            };
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 {
            if let Some(&last) = data.last() {
                self.index = last;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cmos_civil_from_days_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
    }

    #[test]
    fn test_cmos_registers_bcd() {
        let mut c = Cmos::default();
        c.write(0, &[0x09]);
        // 2026-11-28 12:34:56 UTC
        let t = 20_785 * 86_400 + 12 * 3600 + 34 * 60 + 56;
        assert_eq!(c.register(t), 0x26);
        c.write(0, &[0x04]);
        assert_eq!(c.register(t), 0x12);
        c.write(0, &[0x80]); // NMI-disable bit + seconds
        assert_eq!(c.register(t), 0x56);
        c.write(0, &[0x0a]);
        assert_eq!(c.register(t) & 0x80, 0, "no update in progress");
    }

    #[test]
    fn test_quiet_reads_all_ones() {
        let mut q = Quiet;
        let mut b = [0u8; 4];
        q.read(4, &mut b);
        assert_eq!(b, [0xff; 4]);
        q.write(0, &[1, 2, 3]);
    }
}
