//! Reading the contract's environment variables, with the contract's defaults.

use std::{env, str::FromStr, time::Duration};

use anyhow::{Context, anyhow};

/// Default Redis when neither `REDIS_URL` nor `REDIS_HOST`/`REDIS_PORT` is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The variable's value, or `None` when it is unset or empty.
pub fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// The variable parsed as `T`, or `default` when unset; a value that does not parse is an error
/// (a typo in a port must stop the service, not silently fall back).
pub fn parse_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|err| anyhow!("{name}={raw:?} is not valid: {err}")),
    }
}

/// A peer's gRPC URL: `name` or `default`.
pub fn url_or(name: &str, default: &str) -> String {
    var(name).unwrap_or_else(|| default.to_owned())
}

/// Where Redis is: `REDIS_URL`, else `REDIS_HOST`/`REDIS_PORT` (the original's names), else
/// the default. Any database index in the URL is dropped: each service selects its own.
pub fn redis_base_url() -> anyhow::Result<String> {
    let url = match (var("REDIS_URL"), var("REDIS_HOST"), var("REDIS_PORT")) {
        (Some(url), _, _) => url,
        (None, None, None) => DEFAULT_REDIS_URL.to_owned(),
        (None, host, _) => {
            let port: u16 = parse_or("REDIS_PORT", 6379)?;
            format!("redis://{}:{port}", host.as_deref().unwrap_or("127.0.0.1"))
        }
    };
    Ok(strip_db_index(&url))
}

/// The ports a service listens on, from `HTTP_PORT` / `GRPC_PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
}

impl Ports {
    /// Reads `HTTP_PORT` and `GRPC_PORT`, defaulting to the contract's ports of the service.
    pub fn from_env(default_http: u16, default_grpc: u16) -> anyhow::Result<Self> {
        Ok(Self {
            http: parse_or("HTTP_PORT", default_http).context("HTTP_PORT")?,
            grpc: parse_or("GRPC_PORT", default_grpc).context("GRPC_PORT")?,
        })
    }
}

/// What every service with a Redis database reads: its listening ports and where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// HTTP and gRPC listening ports; 0 picks free ones.
    pub ports: Ports,
    /// `redis://host:port` without a database index; each service selects its own.
    pub redis_url: String,
}

impl Common {
    /// `HTTP_PORT`, `GRPC_PORT` (defaulting to the service's contract ports), `REDIS_URL` or
    /// `REDIS_HOST`/`REDIS_PORT`.
    pub fn from_env(default_http: u16, default_grpc: u16) -> anyhow::Result<Self> {
        Ok(Self {
            ports: Ports::from_env(default_http, default_grpc)?,
            redis_url: redis_base_url()?,
        })
    }
}

/// The variable as a duration, or `default` when unset: a number of seconds (`90`), or a number
/// with a unit `s`, `m`, `h` or `d` (`90s`, `15m`, `1h`, `7d`). Zero or anything else is an
/// error.
pub fn duration_or(name: &str, default: Duration) -> anyhow::Result<Duration> {
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    parse_duration(raw.trim())
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| {
            anyhow!("{name}={raw:?} is not valid: expected a positive duration like 90, 90s, 15m, 1h or 7d")
        })
}

fn parse_duration(raw: &str) -> Option<Duration> {
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw, "s"),
    };
    let number: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

fn strip_db_index(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((base, db)) if !db.is_empty() && db.bytes().all(|b| b.is_ascii_digit()) => {
            base.to_owned()
        }
        _ => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, strip_db_index};

    #[test]
    fn a_database_index_in_the_url_is_dropped() {
        assert_eq!(strip_db_index("redis://h:6379/3"), "redis://h:6379");
        assert_eq!(strip_db_index("redis://h:6379/"), "redis://h:6379");
        assert_eq!(strip_db_index("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn durations_are_seconds_or_carry_a_unit() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        for bad in ["", "m", "1.5h", "10 years", "-1", "1w"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
