//! Numbers and times as a person reads them.

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: impl Into<i64>) -> String {
    let secs: i64 = secs.into();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_date(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01.
fn civil_date(days: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01 so that the leap day ends each year; a 400-year
    // era has 146097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of a March year
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `12345678` -> `11.8 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `93784` -> `1d 2h 3m 4s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (v, u) in [(d, "d"), (h, "h"), (m, "m")] {
        if v > 0 || !out.is_empty() {
            out.push_str(&format!("{v}{u} "));
        }
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0i64), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400i64), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000i64), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(-1i64), "1969-12-31 23:59:59 UTC");
        assert_eq!(utc(4_102_444_800i64), "2100-01-01 00:00:00 UTC");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12_345_678), "11.8 MiB");
        assert_eq!(duration(4), "4s");
        assert_eq!(duration(3600), "1h 0m 0s");
        assert_eq!(duration(93_784), "1d 2h 3m 4s");
    }
}
