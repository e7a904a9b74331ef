//! The application clock. Every expiry (challenges, quotes, sessions, leases) reads time from
//! here, so tests move time forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Wall-clock time plus an offset that only tests change.
#[derive(Clone, Default, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let wall = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        wall as i64 + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every server sharing it) forward.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// RFC 3339 UTC with millisecond precision and a `Z` suffix (spec README §3.6).
pub fn format_ms(ms: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::from("1970-01-01T00:00:00.000Z");
    };
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).expect("formatting a valid UTC timestamp")
}

/// Parses any RFC 3339 timestamp into epoch milliseconds.
pub fn parse_rfc3339_ms(value: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(value, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }

    #[test]
    fn parses_any_offset() {
        assert_eq!(
            parse_rfc3339_ms("2026-01-01T01:00:00.123+01:00"),
            Some(1_767_225_600_123)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn advances() {
        let c = Clock::default();
        let before = c.now_ms();
        c.advance_ms(60_000);
        assert!(c.now_ms() >= before + 60_000);
    }
}
