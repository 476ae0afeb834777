//! Requests parsed once into values that are valid by construction.
//!
//! The JSON shapes (`*Body`) only say which fields exist and that they are strings; serde
//! rejects anything else (missing, `null`, non-string, unknown keys) and `ApiJson` turns that
//! into a 400. `TryFrom` then checks what serde cannot: non-empty values, well-formed emails.

use serde::{Deserialize, Deserializer, Serialize};
use service_runtime::{email::Email, limits};
use utoipa::ToSchema;

use crate::error::Error;

/// A string field that may be absent but, when present, must be a string: `null` is refused
/// rather than silently read as "absent".
fn present_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

/// `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "s3cret", "name": "Ada Lovelace"}))]
pub struct NewUserBody {
    /// A well-formed address (`local@domain.tld`); it names the user from now on.
    #[schema(value_type = Email)]
    pub email: String,
    /// Stored only as an argon2id hash.
    #[schema(min_length = 1)]
    pub password: String,
    #[schema(min_length = 1)]
    pub name: String,
}

/// The changes of `PUT /users/...`: at least one of the three.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1, example = json!({"name": "Rear Admiral Grace Hopper"}))]
pub struct UserUpdateBody {
    /// A new, well-formed address no other user has: the user moves to it.
    #[serde(default, deserialize_with = "present_string")]
    #[schema(value_type = Email)]
    pub email: Option<String>,
    /// A new password (stored hashed).
    #[serde(default, deserialize_with = "present_string")]
    #[schema(nullable = false, min_length = 1)]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "present_string")]
    #[schema(nullable = false, min_length = 1)]
    pub name: Option<String>,
}

/// `PUT /users/email`: which user, and what changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "grace@example.com", "data": {"name": "Rear Admiral Grace Hopper"}}))]
pub struct UpdateRequestBody {
    /// The user's current address.
    #[schema(value_type = Email)]
    pub email: String,
    /// The account's password: required, when protection is on, to change the password or
    /// the email; checked whenever it is given.
    #[serde(default, deserialize_with = "present_string")]
    #[schema(nullable = false)]
    pub current_password: Option<String>,
    #[serde(deserialize_with = "service_runtime::http::object")]
    pub data: UserUpdateBody,
}

/// `PUT /users/{email}`: the changes (as in `data` of `PUT /users/email`) and, beside them,
/// the account's current password.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1, example = json!({"password": "Difference-Engine-2", "current_password": "An4lytical-Engine"}))]
pub struct PathUpdateBody {
    /// A new, well-formed address no other user has: the user moves to it.
    #[serde(default, deserialize_with = "present_string")]
    #[schema(value_type = Email)]
    pub email: Option<String>,
    /// A new password (stored hashed).
    #[serde(default, deserialize_with = "present_string")]
    #[schema(nullable = false, min_length = 1)]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "present_string")]
    #[schema(nullable = false, min_length = 1)]
    pub name: Option<String>,
    /// The account's password: required, when protection is on, to change the password or
    /// the email; checked whenever it is given.
    #[serde(default, deserialize_with = "present_string")]
    #[schema(nullable = false)]
    pub current_password: Option<String>,
}

impl PathUpdateBody {
    /// The changes, and the current password given with them.
    pub fn split(self) -> (UserUpdateBody, Option<String>) {
        let Self {
            email,
            password,
            name,
            current_password,
        } = self;
        (
            UserUpdateBody {
                email,
                password,
                name,
            },
            current_password,
        )
    }
}

/// `DELETE /users/email`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "grace@example.com", "current_password": "C0bol-forever!"}))]
pub struct EmailBody {
    /// The user's address.
    #[schema(value_type = Email)]
    pub email: String,
    /// The account's password: required when protection is on; checked whenever it is given.
    #[serde(default, deserialize_with = "present_string")]
    #[schema(nullable = false)]
    pub current_password: Option<String>,
}

/// The optional body of `DELETE /users/{email}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "C0bol-forever!"}))]
pub struct CurrentPasswordBody {
    /// The account's password: required when protection is on; checked whenever it is given.
    #[serde(default, deserialize_with = "present_string")]
    #[schema(nullable = false)]
    pub current_password: Option<String>,
}

/// A clear-text password; never logged, never stored, never serialized.
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub fn for_test(clear: &str) -> Self {
        Self(clear.to_owned())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A user to create: every field checked.
#[derive(Debug)]
pub struct NewUser {
    pub email: Email,
    pub name: String,
    pub password: Password,
}

impl TryFrom<NewUserBody> for NewUser {
    type Error = Error;

    fn try_from(body: NewUserBody) -> Result<Self, Self::Error> {
        Ok(Self {
            email: parse_new_email("email", body.email)?,
            name: non_empty("name", body.name)?,
            password: Password(non_empty("password", body.password)?),
        })
    }
}

/// Changes to a user: at least one, each checked.
#[derive(Debug)]
pub struct UserUpdate {
    pub email: Option<Email>,
    pub name: Option<String>,
    pub password: Option<Password>,
}

impl UserUpdate {
    /// Whether it changes what signs the user in (password or email): with protection on,
    /// only with the current password.
    pub fn is_sensitive(&self) -> bool {
        self.email.is_some() || self.password.is_some()
    }
}

impl TryFrom<UserUpdateBody> for UserUpdate {
    type Error = Error;

    fn try_from(body: UserUpdateBody) -> Result<Self, Self::Error> {
        if body.email.is_none() && body.name.is_none() && body.password.is_none() {
            return Err(Error::Invalid(
                "data must contain at least one of: email, password, name".into(),
            ));
        }
        Ok(Self {
            email: body
                .email
                .map(|e| parse_new_email("data.email", e))
                .transpose()?,
            name: body.name.map(|n| non_empty("data.name", n)).transpose()?,
            password: body
                .password
                .map(|p| non_empty("data.password", p).map(Password))
                .transpose()?,
        })
    }
}

/// The address naming an existing user (path, body or gRPC field).
pub fn parse_email(field: &str, raw: String) -> Result<Email, Error> {
    let raw = non_empty(field, raw)?;
    Email::parse(raw).map_err(|err| Error::Invalid(format!("{field}: {err}")))
}

/// An address a user claims (sign-up, a new email): also no mixed-script look-alikes.
fn parse_new_email(field: &str, raw: String) -> Result<Email, Error> {
    let raw = non_empty(field, raw)?;
    Email::parse_new(raw).map_err(|err| Error::Invalid(format!("{field}: {err}")))
}

/// A non-empty value of at most [`limits::MAX_FIELD_BYTES`].
fn non_empty(field: &str, value: String) -> Result<String, Error> {
    if value.trim().is_empty() {
        return Err(Error::Invalid(format!("{field} must not be empty")));
    }
    limits::within(field, value, limits::MAX_FIELD_BYTES).map_err(Error::Invalid)
}

/// The password rules of `PASSWORD_POLICY`: on by default when protection is on, off in open
/// mode (the original accepts any password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub enforced: bool,
}

/// Shortest password the policy accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// `PASSWORD_POLICY` as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::Args)]
pub struct PasswordPolicySetting {
    /// Password rules (at least 10 characters, with a letter, a digit and a symbol). Default:
    /// on exactly when AUTH_SECRET is set.
    #[arg(long = "password-policy", env = "PASSWORD_POLICY", ignore_case = true)]
    pub policy: Option<Switch>,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl PasswordPolicySetting {
    /// The policy in force: as set, or on exactly when `protected`.
    pub fn resolve(self, protected: bool) -> PasswordPolicy {
        PasswordPolicy {
            enforced: self.policy.map_or(protected, |policy| policy == Switch::On),
        }
    }
}

impl PasswordPolicy {
    /// Refuses a password that breaks a rule, naming it: at least 10 characters, with a letter,
    /// a digit and a symbol (anything that is neither).
    pub fn check(self, field: &str, password: &Password) -> Result<(), Error> {
        if !self.enforced {
            return Ok(());
        }
        let password = password.expose();
        let broken = if password.chars().count() < MIN_PASSWORD_CHARS {
            Some("be at least 10 characters long")
        } else if !password.chars().any(char::is_alphabetic) {
            Some("contain a letter")
        } else if !password.chars().any(|c| c.is_ascii_digit()) {
            Some("contain a digit")
        } else if password.chars().all(char::is_alphanumeric) {
            Some("contain a symbol (a character that is neither a letter nor a digit)")
        } else {
            None
        };
        match broken {
            Some(rule) => Err(Error::Invalid(format!(
                "{field} must {rule} (password policy: at least 10 characters with a letter, a digit and a symbol)"
            ))),
            None => Ok(()),
        }
    }
}

/// The stored form of a user: the JSON value of `users:{email}` (contract layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub email: String,
    /// The PHC string of the password's argon2id hash.
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: &str) -> Result<UserUpdate, String> {
        let body: UserUpdateBody = serde_json::from_str(json).map_err(|e| e.to_string())?;
        UserUpdate::try_from(body).map_err(|e| e.to_string())
    }

    #[test]
    fn an_update_needs_at_least_one_change() {
        assert!(update("{}").is_err());
    }

    #[test]
    fn an_update_refuses_unknown_keys_nulls_non_strings_and_bad_emails() {
        for bad in [
            r#"{"age": "3"}"#,
            r#"{"name": null}"#,
            r#"{"name": 7}"#,
            r#"{"email": "nope"}"#,
            r#"{"password": ""}"#,
        ] {
            assert!(update(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_body_is_refused_unless_every_object_is_a_json_object_with_known_keys() {
        for bad in [
            r#"{"email": "a@b.io", "password": "pw", "name": "Ada", "admin": "yes"}"#,
            r#"["a@b.io", "pw", "Ada"]"#,
        ] {
            let parsed =
                serde_json::from_str::<service_runtime::http::JsonObject<NewUserBody>>(bad);
            assert!(parsed.is_err(), "{bad} was accepted");
        }
        let data_as_array = r#"{"email": "a@b.io", "data": ["new@b.io"]}"#;
        assert!(serde_json::from_str::<UpdateRequestBody>(data_as_array).is_err());
    }

    #[test]
    fn an_update_keeps_only_what_it_names() {
        let parsed = update(r#"{"name": "Ada"}"#).expect("valid");
        assert_eq!(parsed.name.as_deref(), Some("Ada"));
        assert!(parsed.email.is_none() && parsed.password.is_none());
    }

    #[test]
    fn the_password_policy_names_the_rule_a_password_breaks() {
        let on = PasswordPolicy { enforced: true };
        let refusal = |clear: &str| {
            on.check("password", &Password::for_test(clear))
                .err()
                .map(|err| err.to_string())
        };
        assert_eq!(refusal("Str0ng-pass!"), None);
        assert!(refusal("Sh0rt!").is_some_and(|m| m.contains("at least 10 characters")));
        assert!(refusal("1234567890-!").is_some_and(|m| m.contains("a letter")));
        assert!(refusal("no-digits-here").is_some_and(|m| m.contains("a digit")));
        assert!(refusal("n0symbolsatall").is_some_and(|m| m.contains("a symbol")));
        let off = PasswordPolicy { enforced: false };
        assert!(off.check("password", &Password::for_test("x")).is_ok());
    }

    #[test]
    fn a_new_user_needs_non_empty_fields_and_a_well_formed_email() {
        let body = |email: &str, password: &str, name: &str| NewUserBody {
            email: email.into(),
            password: password.into(),
            name: name.into(),
        };
        assert!(NewUser::try_from(body("a@b.io", "pw", "Ada")).is_ok());
        assert!(NewUser::try_from(body("a@b", "pw", "Ada")).is_err());
        assert!(NewUser::try_from(body("a@b.io", "", "Ada")).is_err());
        assert!(NewUser::try_from(body("a@b.io", "pw", "  ")).is_err());
    }
}
