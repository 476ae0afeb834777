//! `Email`: an address that has been checked once and is trusted afterwards.

use std::fmt;

/// Longest address accepted (RFC 5321's path limit).
const MAX_LEN: usize = 254;

/// What [`Email::parse`] accepts, as a regular expression for API documents (ECMA-262, as
/// JSON Schema has it): no whitespace or control character, one `@`, and a dotted domain whose
/// labels are non-empty and neither start nor end with `-`.
pub const PATTERN: &str = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@.\s\x00-\x1f\x7f-\x9f-](?:[^@.\s\x00-\x1f\x7f-\x9f]*[^@.\s\x00-\x1f\x7f-\x9f-])?(?:\.[^@.\s\x00-\x1f\x7f-\x9f-](?:[^@.\s\x00-\x1f\x7f-\x9f]*[^@.\s\x00-\x1f\x7f-\x9f-])?)+$";

/// A well-formed email address: `local@domain`, the domain dotted, no whitespace or control
/// characters. Kept exactly as given (it is the Redis key), only checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

/// Why a string is not an [`Email`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid email address")]
pub struct InvalidEmail(pub String);

impl Email {
    /// Checks `raw` and wraps it.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidEmail> {
        let raw = raw.into();
        if is_well_formed(&raw) {
            Ok(Self(raw))
        } else {
            Err(InvalidEmail(raw))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn is_well_formed(raw: &str) -> bool {
    if raw.len() > MAX_LEN || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = raw.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

/// In API documents, an email field is a string matching [`PATTERN`], at most 254 long; a
/// field that holds one as a plain `String` says so with `#[schema(value_type = Email)]`.
impl utoipa::PartialSchema for Email {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(PATTERN))
            .max_length(Some(MAX_LEN))
            .description(Some("A well-formed email address: local@domain.tld"))
            .into()
    }
}

impl utoipa::ToSchema for Email {}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn ordinary_addresses_are_accepted_unchanged() {
        for ok in ["a@b.io", "first.last+tag@sub.example.com", "Ü@bü.de"] {
            assert_eq!(Email::parse(ok).map(Email::into_string), Ok(ok.to_owned()));
        }
    }

    const MALFORMED: [&str; 13] = [
        "",
        "plain",
        "@b.io",
        "a@",
        "a@b",
        "a@@b.io",
        "a b@c.io",
        "a@b..io",
        "a@-b.io",
        "a@b-.io",
        "a@b.io\n",
        "a\u{85}@b.io",
        "a@b.io.",
    ];

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in MALFORMED {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_documented_pattern_accepts_what_parse_accepts() {
        let pattern = regex::Regex::new(super::PATTERN).expect("the pattern compiles");
        for ok in [
            "a@b.io",
            "first.last+tag@sub.example.com",
            "Ü@bü.de",
            "a-@b-c.d",
        ] {
            assert!(Email::parse(ok).is_ok() && pattern.is_match(ok), "{ok:?}");
        }
        for bad in MALFORMED {
            assert!(!pattern.is_match(bad), "the pattern accepts {bad:?}");
        }
    }
}
