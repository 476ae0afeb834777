//! `Email`: an address that has been checked once and is trusted afterwards. The one parser
//! every service uses at every edge (REST bodies and query strings, gRPC fields).
//!
//! The address becomes part of Redis keys (`users:{email}`, `conversation:{a}:{b}`,
//! `notifications:{email}`), so besides being well-formed it must not be able to break that
//! layout or fool a reader: no `:` (two different pairs could otherwise share a conversation
//! key), no glob characters (they would match other keys in a `SCAN MATCH`), no whitespace,
//! control, invisible or bidirectional-override characters (two addresses that look the same
//! must be the same). The domain is lower-cased (it is case-insensitive); the local part is
//! kept as given.

use std::fmt;

/// Longest address accepted (RFC 5321's path limit), in bytes.
pub const MAX_LEN: usize = 254;
/// How much of a refused input an error message repeats.
const ECHO_LEN: usize = 64;

/// A well-formed email address: `local@domain`, the domain dotted and lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

/// Why a string is not an [`Email`]; repeats at most the first 64 characters of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown:?} is not a valid email address ({reason})")]
pub struct InvalidEmail {
    shown: String,
    reason: &'static str,
}

impl Email {
    /// Checks `raw` and wraps it, with its domain lower-cased.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidEmail> {
        let raw = raw.into();
        match check(&raw) {
            Ok(at) => {
                let (local, domain) = raw.split_at(at);
                Ok(Self(format!("{local}{}", domain.to_lowercase())))
            }
            Err(reason) => Err(InvalidEmail {
                shown: raw.chars().take(ECHO_LEN).collect(),
                reason,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The position of the `@`, or why `raw` is refused.
fn check(raw: &str) -> Result<usize, &'static str> {
    if raw.len() > MAX_LEN {
        return Err("longer than 254 bytes");
    }
    if let Some(c) = raw.chars().find(|&c| is_forbidden(c)) {
        return Err(match c {
            ':' => "contains ':'",
            '*' | '?' | '[' | ']' | '\\' => "contains a glob character",
            _ => "contains whitespace, a control or an invisible character",
        });
    }
    let Some(at) = raw.find('@') else {
        return Err("no '@'");
    };
    let (local, domain) = (&raw[..at], &raw[at + 1..]);
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if local.is_empty() {
        Err("nothing before '@'")
    } else if !domain_ok {
        Err("not a dotted domain after '@'")
    } else {
        Ok(at)
    }
}

/// Characters no address here may contain.
fn is_forbidden(c: char) -> bool {
    matches!(c, ':' | '*' | '?' | '[' | ']' | '\\')
        || c.is_whitespace()
        || c.is_control()
        || is_invisible(c)
}

/// Format characters (Unicode category Cf) and other code points that render as nothing or
/// reorder text: zero-width spaces and joiners, bidirectional marks, embeddings, overrides and
/// isolates, the soft hyphen, the byte-order mark, invisible operators, tag characters.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

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
        for ok in [
            "a@b.io",
            "first.last+tag@sub.example.com",
            "Ü@bü.de",
            "o'brien@x.io",
        ] {
            assert_eq!(Email::parse(ok).map(Email::into_string), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn the_domain_is_lower_cased_and_the_local_part_kept() {
        let email = Email::parse("Ada.L@Example.COM").map(Email::into_string);
        assert_eq!(email, Ok("Ada.L@example.com".to_owned()));
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "", "plain", "@b.io", "a@", "a@b", "a@@b.io", "a b@c.io", "a@b..io", "a@-b.io",
            "a@b.io\n",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn addresses_that_could_break_the_key_layout_or_fool_a_reader_are_refused() {
        for bad in [
            "p@q.io:r",
            "r:s@t.io",
            "a*@b.io",
            "a?@b.io",
            "a[1]@b.io",
            "a\\b@c.io",
            "admin\u{202E}@b.io",
            "ad\u{200B}min@b.io",
            "a@b\u{FEFF}.io",
            "a\u{00AD}b@c.io",
            "a\tb@c.io",
            "a\u{0007}@b.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_overlong_address_is_refused_and_the_error_repeats_only_its_start() {
        let long = format!("{}@b.io", "a".repeat(300));
        let err = Email::parse(long).expect_err("too long").to_string();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains("254"), "{err}");
    }
}
