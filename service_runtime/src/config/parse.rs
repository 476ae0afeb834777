//! Parsing setting values: durations, positive numbers, Redis URLs.

use std::time::Duration;

/// A duration: `500ms`, `10s`, `15m`, `1h`, `7d`, or plain seconds (`10`, `0.5`). Zero or
/// anything else is refused.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit_secs) = [
        ("ms", 0.001),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86_400.0),
    ]
    .iter()
    .find_map(|(suffix, secs)| raw.strip_suffix(suffix).map(|number| (number, *secs)))
    .unwrap_or((raw, 1.0));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 10s, 15m, 1h, 7d or 10".to_owned())?;
    Duration::try_from_secs_f64(value * unit_secs)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| "must be a positive duration".to_owned())
}

/// A number above zero.
pub fn positive<T>(raw: &str) -> Result<T, String>
where
    T: std::str::FromStr + Default + PartialEq,
    T::Err: std::fmt::Display,
{
    let value: T = raw.trim().parse().map_err(|err: T::Err| err.to_string())?;
    if value == T::default() {
        return Err("must be above 0".to_owned());
    }
    Ok(value)
}

/// `host:port[,host:port…]`: at least one, each with a port.
pub(super) fn host_ports(raw: &str) -> Result<Vec<(String, u16)>, String> {
    let nodes = raw
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(|node| {
            let (host, port) = node
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .ok_or_else(|| format!("{node:?} is not host:port"))?;
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| format!("{node:?} has no valid port"))?;
            Ok((host.trim_matches(['[', ']']).to_owned(), port))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if nodes.is_empty() {
        return Err("expected host:port[,host:port…]".to_owned());
    }
    Ok(nodes)
}

pub(super) fn strip_db_index(url: &str) -> String {
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

    use clap::Parser as _;

    use super::{parse_duration, strip_db_index};
    use crate::config::{RedisConfig, Runtime};

    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        runtime: Runtime,
    }

    #[test]
    fn the_shared_settings_are_one_valid_command_with_the_documented_defaults() {
        use clap::CommandFactory as _;
        Only::command().debug_assert();
        let only = Only::try_parse_from(["service"]).expect("defaults parse");
        let limits = only.runtime.limits;
        assert_eq!(limits.http.request_timeout, Duration::from_secs(30));
        assert_eq!(limits.grpc.request_timeout, Duration::from_secs(30));
        assert_eq!(limits.http.max_connections, 1024);
        assert_eq!(limits.grpc.max_concurrent_streams, 256);
        assert!(!only.runtime.auth.is_on());
        let refused = Only::try_parse_from(["service", "--http-idle-timeout", "0"]);
        assert!(refused.is_err(), "a zero timeout was accepted");
    }

    #[test]
    fn durations_read_with_or_without_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 10 "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
    }

    #[test]
    fn zero_negative_and_unitless_garbage_are_not_durations() {
        for bad in ["0", "0ms", "-1s", "ten", "5w", ""] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_redis_user_and_password_come_from_the_url_or_the_settings_and_are_never_printed() {
        let from_url = RedisConfig::at("redis://frontend-service:s3cret@h:6379/4");
        let info = from_url.connection_info(2).expect("valid");
        assert_eq!(info.redis_settings().username(), Some("frontend-service"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 2);
        assert!(!format!("{from_url:?}").contains("s3cret"), "{from_url:?}");

        let only = Only::try_parse_from([
            "service",
            "--redis-url",
            "redis://other:old@h:6379",
            "--redis-username",
            "user-service",
            "--redis-password",
            "n3w",
        ])
        .expect("parses");
        let redis = &only.runtime.redis;
        let info = redis.connection_info(0).expect("valid");
        assert_eq!(info.redis_settings().username(), Some("user-service"));
        assert_eq!(info.redis_settings().password(), Some("n3w"));
        assert!(!format!("{redis:?}").contains("n3w"), "{redis:?}");
        assert!(!format!("{redis:?}").contains("old"), "{redis:?}");
    }

    #[test]
    fn sentinels_are_host_port_lists_and_share_the_redis_password_unless_given_their_own() {
        use super::host_ports;
        assert_eq!(
            host_ports("a:26379, b:26380,").expect("valid"),
            [("a".to_owned(), 26379), ("b".to_owned(), 26380)]
        );
        for bad in ["", "a", ":1", "a:0", "a:port", "a:70000"] {
            assert!(host_ports(bad).is_err(), "{bad:?} was accepted");
        }
        let only = |args: &[&str]| {
            let mut argv = vec!["service", "--redis-url", "redis://u:pw@h:6379"];
            argv.extend_from_slice(args);
            Only::try_parse_from(argv).expect("parses").runtime.redis
        };
        assert!(
            only(&[]).sentinel_nodes().expect("valid").is_none(),
            "no sentinels, no Sentinel"
        );
        let shared = only(&["--redis-sentinels", "s1:26379,s2:26379"]);
        let nodes = shared.sentinel_nodes().expect("valid").expect("sentinels");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].redis_settings().password(), Some("pw"));
        assert_eq!(nodes[0].redis_settings().username(), None);
        assert_eq!(
            nodes[0].redis_settings().db(),
            0,
            "a sentinel has no databases"
        );
        let own = only(&[
            "--redis-sentinels",
            "s1:26379",
            "--redis-sentinel-username",
            "watcher",
            "--redis-sentinel-password",
            "spw",
        ]);
        let nodes = own.sentinel_nodes().expect("valid").expect("sentinels");
        assert_eq!(nodes[0].redis_settings().username(), Some("watcher"));
        assert_eq!(nodes[0].redis_settings().password(), Some("spw"));
        assert!(!format!("{own:?}").contains("spw"), "{own:?}");
        let refused = Only::try_parse_from(["service", "--redis-sentinels", "nohost"]);
        assert!(refused.is_err(), "a sentinel without a port was accepted");
    }

    #[test]
    fn a_database_index_in_the_url_is_dropped() {
        assert_eq!(strip_db_index("redis://h:6379/3"), "redis://h:6379");
        assert_eq!(strip_db_index("redis://h:6379/"), "redis://h:6379");
        assert_eq!(strip_db_index("redis://h:6379"), "redis://h:6379");
    }
}
