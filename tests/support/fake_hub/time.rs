//! Calendar arithmetic for the double's timestamps.
//!
//! The generated dataset lives on a fixed clock ([`NOW`]) rather than the wall clock, so the same
//! seed gives byte-identical pages on any day. Hub writes three precisions of RFC 3339 (seconds
//! for image pushes, microseconds for tag updates, nanoseconds for pulls); all three are here.

/// Microseconds since the Unix epoch.
pub(super) type Micros = i64;

/// One second in [`Micros`].
pub(super) const SECOND: Micros = 1_000_000;
/// One minute in [`Micros`].
pub(super) const MINUTE: Micros = 60 * SECOND;
/// One hour in [`Micros`].
pub(super) const HOUR: Micros = 60 * MINUTE;
/// One day in [`Micros`].
pub(super) const DAY: Micros = 24 * HOUR;

/// The dataset's "now": every generated time lies before it (rebuild rounds just after it).
pub(super) const NOW: Micros = 1_795_176_000 * SECOND; // 2026-11-20T12:00:00Z

/// Midnight UTC of a civil date.
pub(super) fn date(year: i64, month: u32, day: u32) -> Micros {
    days_from_civil(year, month, day) * DAY
}

/// `2020-06-09T20:22:13Z`: how Hub writes an image's `last_pushed`.
pub(super) fn rfc3339_secs(t: Micros) -> String {
    format!("{}Z", seconds_part(t))
}

/// `2020-06-09T20:45:50.400981Z`: how Hub writes `last_updated` and `tag_last_pushed`.
pub(super) fn rfc3339_micros(t: Micros) -> String {
    format!("{}.{:06}Z", seconds_part(t), t.rem_euclid(SECOND))
}

/// `2026-03-16T09:11:16.626819836Z`: how Hub writes pull times. The three sub-microsecond
/// digits are derived from the time itself so they look varied yet stay deterministic.
pub(super) fn rfc3339_nanos(t: Micros) -> String {
    let extra = (t.rem_euclid(SECOND) * 7919) % 1000;
    format!(
        "{}.{:06}{:03}Z",
        seconds_part(t),
        t.rem_euclid(SECOND),
        extra
    )
}

/// `20241011`: the date stamp of dated distribution tags such as `noble-20241011`.
pub(super) fn compact_date(t: Micros) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    format!("{y:04}{m:02}{d:02}")
}

fn seconds_part(t: Micros) -> String {
    let days = t.div_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = t.rem_euclid(DAY) / SECOND;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
