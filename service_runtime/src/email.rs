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
//!
//! **One address, one form.** Every address is put in Unicode normalization form C (NFC)
//! before anything else looks at it, so `ade\u{301}@x.io` (`e` + combining acute) and
//! `ad\u{e9}@x.io` (precomposed `é`) are the same [`Email`], the same Redis key and compare
//! equal everywhere. An address already in NFC — every ASCII address, and what keyboards and
//! browsers produce — is unchanged by this, so the keys stored before keep working.
//!
//! **No look-alikes for new addresses.** [`Email::parse_new`], used where an address is
//! claimed (sign-up, email change), also refuses a *mixed-script confusable*: a local part, or
//! a domain label, whose characters do not share one script (UTS #39 §5.1 "single script",
//! with Common and Inherited characters such as digits, `.`, `+`, `-` going with any script)
//! and that contains a character Unicode lists as confusable with one of another script
//! (UTS #39 `confusablesSummary`: Cyrillic `а` in `pаypal`, Greek `ο` in `gοogle`). Addresses
//! stored before are still looked up with [`Email::parse`], which does not refuse them.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_security::{MixedScript, is_potential_mixed_script_confusable_char};

/// Longest address accepted (RFC 5321's path limit), in bytes.
pub const MAX_LEN: usize = 254;
/// How much of a refused input an error message repeats.
const ECHO_LEN: usize = 64;

/// What [`Email::parse`] accepts, as a regular expression for API documents (ECMA-262, as
/// JSON Schema has it): one `@`, a dotted domain whose labels are non-empty and neither start
/// nor end with `-`, and none of the characters the parser refuses (`:`, glob characters,
/// whitespace, control and the common invisible or bidirectional ones).
pub const PATTERN: &str = r"^[^@:*?\[\]\\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]+@[^@.:*?\[\]\\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff-](?:[^@.:*?\[\]\\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]*[^@.:*?\[\]\\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff-])?(?:\.[^@.:*?\[\]\\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff-](?:[^@.:*?\[\]\\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]*[^@.:*?\[\]\\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff-])?)+$";

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
    /// Checks `raw` and wraps it in NFC, with its domain lower-cased.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidEmail> {
        let raw = raw.into();
        let refuse = |reason| InvalidEmail {
            shown: raw.chars().take(ECHO_LEN).collect(),
            reason,
        };
        let normalized: String = raw.nfc().collect();
        let at = check(&normalized).map_err(refuse)?;
        let (local, domain) = normalized.split_at(at);
        // Lower-casing can leave a string that is not NFC (rarely); normalize once more.
        let email: String = format!("{local}{}", domain.to_lowercase()).nfc().collect();
        check(&email).map_err(refuse)?;
        Ok(Self(email))
    }

    /// [`Email::parse`] for an address someone claims (a new account, a new address): also
    /// refuses a local part or domain label that mixes scripts with a confusable character.
    pub fn parse_new(raw: impl Into<String>) -> Result<Self, InvalidEmail> {
        let email = Self::parse(raw)?;
        let (local, domain) = email.0.split_once('@').unwrap_or_default();
        let confusable = |part: &str| {
            !part.is_single_script() && part.chars().any(is_potential_mixed_script_confusable_char)
        };
        let reason = if confusable(local) {
            "its local part mixes scripts with look-alike characters"
        } else if domain.split('.').any(confusable) {
            "its domain mixes scripts with look-alike characters"
        } else {
            return Ok(email);
        };
        Err(InvalidEmail {
            shown: email.0.chars().take(ECHO_LEN).collect(),
            reason,
        })
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

/// An account change as a `ForgetUser` request names it: the account's address and, for an
/// email change, the new one (`None`: the account was deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChange {
    pub user: Email,
    pub moved_to: Option<Email>,
}

impl AccountChange {
    /// The change from a request's two fields; `None` when an address is missing (the user's)
    /// or malformed (either).
    pub fn parse(user: Option<String>, moved_to: Option<String>) -> Option<Self> {
        let user = Email::parse(user?).ok()?;
        let moved_to = match moved_to.filter(|raw| !raw.is_empty()) {
            Some(raw) => Some(Email::parse(raw).ok()?),
            None => None,
        };
        let span = tracing::Span::current();
        span.record("user_email", user.as_str());
        span.record("moved_to", moved_to.as_ref().map(Email::as_str));
        Some(Self { user, moved_to })
    }

    /// `ForgetUser`'s answer: `forget` (which returns how many things it moved or removed)
    /// run for a well-formed change and logged with `what` it changed (e.g. "messages");
    /// `false` for a malformed one (a malformed address is nobody's: nothing to forget).
    pub async fn forget<F, Fut, E>(
        user: Option<String>,
        moved_to: Option<String>,
        what: &str,
        forget: F,
    ) -> Result<bool, E>
    where
        F: FnOnce(Self) -> Fut,
        Fut: std::future::Future<Output = Result<u64, E>>,
    {
        let Some(change) = Self::parse(user, moved_to) else {
            return Ok(false);
        };
        let done = match change.moved_to {
            Some(_) => "carried to the new address",
            None => "forgotten",
        };
        let count = forget(change).await?;
        tracing::info!(count, "user's {what} {done}");
        Ok(true)
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
    fn the_domain_is_lower_cased_and_the_local_part_kept() {
        let email = Email::parse("Ada.L@Example.COM").map(Email::into_string);
        assert_eq!(email, Ok("Ada.L@example.com".to_owned()));
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in MALFORMED {
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
    fn canonically_equivalent_addresses_are_one_address() {
        let decomposed = Email::parse("ade\u{301}@x.io").expect("valid");
        let composed = Email::parse("ad\u{e9}@x.io").expect("valid");
        assert_eq!(decomposed, composed);
        assert_eq!(decomposed.as_str(), "ad\u{e9}@x.io");
        // The domain too, and after lower-casing.
        assert_eq!(
            Email::parse("a@CAFE\u{301}.fr").map(Email::into_string),
            Ok("a@caf\u{e9}.fr".to_owned())
        );
        // ASCII and NFC addresses are unchanged: their keys stay what they were.
        for nfc in [
            "ada@example.com",
            "Ü@bü.de",
            "иван@почта.рф",
            "田中@例え.jp",
        ] {
            assert_eq!(
                Email::parse(nfc).map(Email::into_string),
                Ok(nfc.to_owned())
            );
        }
    }

    #[test]
    fn a_new_address_that_mixes_scripts_with_look_alikes_is_refused() {
        for bad in [
            "p\u{430}ypal@x.io",       // Cyrillic а among Latin letters
            "g\u{3bf}\u{3bf}gle@x.io", // Greek ο
            "ada@p\u{430}ypal.com",    // in a domain label
            "ada@mail.\u{430}pple.com",
        ] {
            let err = Email::parse_new(bad).expect_err(bad).to_string();
            assert!(err.contains("mixes scripts"), "{err}");
            // Still an address that can be looked up, should one have been stored before.
            assert!(Email::parse(bad).is_ok(), "{bad}");
        }
        for ok in [
            "ada@example.com",
            "first.last+tag-1@sub.example.com",
            "иван@почта.рф",          // one script
            "ivan@почта.example.com", // one script per domain label
            "田中ひろし@example.jp",  // Han and Hiragana are one writing system
            "Ü@bü.de",
            "ad\u{e9}@x.io",
        ] {
            assert!(Email::parse_new(ok).is_ok(), "{ok:?} was refused");
        }
    }

    #[test]
    fn an_overlong_address_is_refused_and_the_error_repeats_only_its_start() {
        let long = format!("{}@b.io", "a".repeat(300));
        let err = Email::parse(long).expect_err("too long").to_string();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains("254"), "{err}");
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
