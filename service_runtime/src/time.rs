//! Timestamps as the contract writes them: RFC 3339 in UTC.

use chrono::{SecondsFormat, Utc};

/// Now, as RFC 3339 UTC with microseconds, e.g. `2025-01-14T12:00:00.123456Z`.
pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

/// `at` as the contract writes timestamps (see [`now_rfc3339`]). Strings of this one format
/// compare in time order, which the retention trim relies on.
pub fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}
