//! `CORS_ALLOWED_ORIGINS`: which browser origins may call a service's HTTP and gRPC-Web APIs
//! from their own pages (see `crate::cors` for what the servers do with it).

use std::sync::Arc;

use axum::http::HeaderValue;

const VAR: &str = "CORS_ALLOWED_ORIGINS";

/// The origins whose pages may call this service from a browser.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CorsConfig {
    /// Browser origins (`scheme://host[:port]`, comma-separated) whose pages may call this
    /// service's HTTP API and gRPC-Web; `*` alone: any origin. Empty: none, and no reply
    /// carries a CORS header (the web inbox is served same-origin and needs none).
    #[arg(long = "cors-allowed-origins", env = VAR, default_value = "", value_parser = parse_origins)]
    pub allowed_origins: AllowedOrigins,
}

/// What `CORS_ALLOWED_ORIGINS` allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// No origin: CORS is off.
    #[default]
    None,
    /// `*`: any origin.
    Any,
    /// Exactly these origins, as browsers write them in `Origin` (lowercase, no default port).
    List(Arc<[HeaderValue]>),
}

impl AllowedOrigins {
    /// Whether a request with this `Origin` header may be answered with CORS headers.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::List(list) => list.contains(origin),
        }
    }
}

/// `CORS_ALLOWED_ORIGINS`: empty entries are skipped; `*` must stand alone; every other entry
/// is an origin, `scheme://host[:port]`, without path, query or user. An origin that a
/// browser would never send (`https://a.example/`, `null`) is refused here, at startup,
/// rather than matching nothing later.
fn parse_origins(raw: &str) -> Result<AllowedOrigins, String> {
    let entries: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if entries.is_empty() {
        return Ok(AllowedOrigins::None);
    }
    if entries.contains(&"*") {
        return if entries.len() == 1 {
            Ok(AllowedOrigins::Any)
        } else {
            Err(format!(
                "{VAR}: `*` (any origin) stands alone; it cannot be combined with a list"
            ))
        };
    }
    let origins = entries
        .iter()
        .map(|entry| parse_origin(entry))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AllowedOrigins::List(origins.into()))
}

/// One origin, normalised as a browser serialises it: lowercase, without the scheme's
/// default port.
fn parse_origin(entry: &str) -> Result<HeaderValue, String> {
    let refused = |why: &str| {
        Err(format!(
            "{VAR}: {entry:?} is not an origin ({why}); expected scheme://host[:port], \
             e.g. https://inbox.example.com"
        ))
    };
    let lower = entry.to_ascii_lowercase();
    let Some((scheme, authority)) = lower.split_once("://") else {
        return refused("no scheme");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return refused("not a scheme");
    }
    if authority.is_empty() {
        return refused("no host");
    }
    if authority.contains(['/', '?', '#', '@']) || authority.contains(char::is_whitespace) {
        return refused("a path, query, user or space: browsers send only scheme://host[:port]");
    }
    // The port is what follows the last `:` outside an IPv6 literal's brackets.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return refused("no host");
    }
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) => Some(port),
            Err(_) => return refused("not a port"),
        },
    };
    let default_port = match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let serialised = match port {
        Some(port) if Some(port) != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    };
    HeaderValue::from_str(&serialised).or_else(|_| refused("not a header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(origins: &[&'static str]) -> AllowedOrigins {
        AllowedOrigins::List(
            origins
                .iter()
                .copied()
                .map(HeaderValue::from_static)
                .collect(),
        )
    }

    #[test]
    fn empty_means_off_and_a_star_alone_means_any_origin() {
        assert_eq!(parse_origins(""), Ok(AllowedOrigins::None));
        assert_eq!(parse_origins(" , "), Ok(AllowedOrigins::None));
        assert_eq!(parse_origins(" * "), Ok(AllowedOrigins::Any));
        let err = parse_origins("*, https://a.example").expect_err("mixed");
        assert!(err.contains("stands alone"), "{err}");
    }

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        assert_eq!(
            parse_origins("https://Inbox.Example.com, http://localhost:8000,"),
            Ok(list(&[
                "https://inbox.example.com",
                "http://localhost:8000"
            ]))
        );
        assert_eq!(
            parse_origins("https://a.example:443,http://b.example:80,https://[::1]:8443"),
            Ok(list(&[
                "https://a.example",
                "http://b.example",
                "https://[::1]:8443"
            ]))
        );
        let allowed = parse_origins("https://a.example").expect("valid");
        assert!(allowed.allows(&HeaderValue::from_static("https://a.example")));
        assert!(!allowed.allows(&HeaderValue::from_static("https://b.example")));
        assert!(!AllowedOrigins::None.allows(&HeaderValue::from_static("https://a.example")));
        assert!(AllowedOrigins::Any.allows(&HeaderValue::from_static("https://b.example")));
    }

    #[test]
    fn what_a_browser_never_sends_as_an_origin_is_refused_at_startup() {
        for bad in [
            "null",
            "a.example",
            "https://a.example/",
            "https://a.example/inbox",
            "https://user@a.example",
            "https://a.example?x",
            "https://",
            "https://:8080",
            "https://a.example:99999",
            "1http://a.example",
        ] {
            assert!(parse_origins(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
