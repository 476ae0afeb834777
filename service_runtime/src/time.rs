//! Time as the system writes it: the contract's RFC 3339 timestamps in UTC, and Unix time.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{SecondsFormat, Utc};

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Now, as RFC 3339 UTC with microseconds, e.g. `2025-01-14T12:00:00.123456Z`.
pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

/// `at` as the contract writes timestamps (see [`now_rfc3339`]). Strings of this one format
/// compare in time order, which the retention trim relies on.
pub fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}
