//! The keys of protection: the signing and checking of login tokens, account versions, and the per-service internal credentials derived from the same
//! secret.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{AuthConfig, AuthError, config::Secret};
use crate::{
    email::Email,
    grpc_client::{INTERNAL_CALLER_HEADER, InternalCredential, ServiceName},
    time::unix_now,
};

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 under `key` of `parts` joined by NUL bytes (one part: exactly that part).
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            mac.update(&[0]);
        }
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The claims of a login token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's email.
    pub sub: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch; the token is refused from then on.
    pub exp: u64,
    /// The account version the token was issued for (see the module documentation).
    pub ver: String,
}

/// A token issued by `POST /login`.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    /// When it expires, RFC 3339 UTC.
    pub expires_at: String,
}

/// Signs and checks tokens, derives account versions and the services' internal credentials;
/// cheap to clone.
#[derive(Clone)]
pub struct TokenKeys(Arc<Keys>);

struct Keys {
    on: bool,
    /// The key of the `ver` HMAC; the signing key is derived apart from it.
    version_key: [u8; 32],
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    /// What this service presents on its outbound calls (none in open mode, or for keys of
    /// no service).
    credential: InternalCredential,
    /// The credential of each of the four services, to recognise callers (empty in open mode).
    callers: Vec<InternalCredential>,
}

/// The internal credential of `service` under `secret`: HMAC-SHA256(secret,
/// `"internal-service:" + name`), hex (docs/security.md).
fn credential_of(secret: &[u8], service: ServiceName) -> InternalCredential {
    let message = format!("internal-service:{}", service.as_str());
    let value = hex(&hmac(secret, &[message.as_bytes()]))
        .parse()
        .expect("hex is valid ASCII metadata");
    InternalCredential::new(Some((service, value)))
}

impl TokenKeys {
    /// The keys of `service`: [`TokenKeys::new`] plus the credential `service` presents on its
    /// outbound calls (when protection is on).
    pub fn of_service(config: &AuthConfig, service: ServiceName) -> Self {
        Self::with_identity(config, Some(service))
    }

    /// Keys derived from the configured secret, or from a random one in open mode (tokens are
    /// then good only on this process, which is all open mode needs: nothing checks them).
    /// They check tokens and recognise the services' credentials but present none: a
    /// service uses [`TokenKeys::of_service`].
    pub fn new(config: &AuthConfig) -> Self {
        Self::with_identity(config, None)
    }

    fn with_identity(config: &AuthConfig, identity: Option<ServiceName>) -> Self {
        let secret: Vec<u8> = match &config.secret {
            Some(Secret(secret)) => secret.to_vec(),
            None => (0..2)
                .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
                .collect(),
        };
        // One secret, three unrelated keys.
        let signing_key = hmac(&secret, &[b"token-signing"]);
        let version_key = hmac(&secret, &[b"token-version"]);
        let callers: Vec<InternalCredential> = match config.secret {
            Some(_) => ServiceName::ALL
                .into_iter()
                .map(|service| credential_of(&secret, service))
                .collect(),
            None => Vec::new(),
        };
        let credential = identity
            .and_then(|own| {
                callers
                    .iter()
                    .find(|credential| credential.service() == Some(own))
                    .cloned()
            })
            .unwrap_or_default();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self(Arc::new(Keys {
            on: config.is_on(),
            version_key,
            encoding: EncodingKey::from_secret(&signing_key),
            decoding: DecodingKey::from_secret(&signing_key),
            validation,
            ttl: config.token_ttl,
            credential,
            callers,
        }))
    }

    /// Whether protection is on.
    pub fn is_on(&self) -> bool {
        self.0.on
    }

    /// The credential for outbound calls to the other services: this service's own.
    pub fn internal_credential(&self) -> &InternalCredential {
        &self.0.credential
    }

    /// The service whose valid credential a request with `headers` carries: the one named in
    /// `x-internal-caller`, if the credential presented is that service's (constant-time
    /// comparison). `None` in open mode, without a credential, or with a wrong one.
    pub fn internal_caller(&self, headers: &axum::http::HeaderMap) -> Option<ServiceName> {
        let named = ServiceName::parse(headers.get(INTERNAL_CALLER_HEADER)?.to_str().ok()?)?;
        self.0
            .callers
            .iter()
            .find(|credential| credential.service() == Some(named))
            .filter(|credential| credential.is_carried_by(headers))
            .map(|_| named)
    }

    /// The account version of a user whose stored password hash is `password_hash` and whose
    /// address is at token generation `generation`.
    pub fn version(&self, password_hash: &str, generation: u64) -> String {
        let mac = hmac(
            &self.0.version_key,
            &[password_hash.as_bytes(), generation.to_string().as_bytes()],
        );
        hex(&mac[..16])
    }

    /// A token for `email` at account version `version`, valid for the configured TTL.
    pub fn issue(&self, email: &Email, version: String) -> anyhow::Result<IssuedToken> {
        let iat = unix_now();
        let exp = iat.saturating_add(self.0.ttl.as_secs().max(1));
        let claims = Claims {
            sub: email.as_str().to_owned(),
            iat,
            exp,
            ver: version,
        };
        let expires_at = i64::try_from(exp)
            .ok()
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
            .context("token expiry out of range")?
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(IssuedToken {
            token: self.sign(&claims)?,
            expires_at,
        })
    }

    /// Signs any claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.0.encoding)
            .context("signing a token")
    }

    /// The claims of `token` if this system signed it and it has not expired. Whether it still
    /// matches the account is for [`CurrentTokens`] to say.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    AuthError::Invalid("its signature does not match (forged or from elsewhere)")
                }
                _ => AuthError::Invalid("it is not a well-formed token of this system"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::DEFAULT_TOKEN_TTL;

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(&AuthConfig::protected(secret, DEFAULT_TOKEN_TTL).expect("long enough"))
    }

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid")
    }

    fn of(secret: &[u8], service: ServiceName) -> TokenKeys {
        TokenKeys::of_service(
            &AuthConfig::protected(secret, DEFAULT_TOKEN_TTL).expect("long enough"),
            service,
        )
    }

    fn caller_of(keys: &TokenKeys, request: &tonic::Request<()>) -> Option<ServiceName> {
        keys.internal_caller(&request.metadata().clone().into_headers())
    }

    #[test]
    fn a_short_secret_is_refused_with_its_length() {
        let err = AuthConfig::protected(b"too-short", DEFAULT_TOKEN_TTL).expect_err("short");
        assert!(err.to_string().contains("9 bytes"), "{err}");
        assert!(err.to_string().contains("32"), "{err}");
    }

    #[test]
    fn the_debug_form_never_shows_the_secret() {
        let config = AuthConfig::protected(&[b'x'; 40], DEFAULT_TOKEN_TTL).expect("long enough");
        assert!(!format!("{config:?}").contains("xxxx"));
    }

    #[test]
    fn a_token_verifies_with_its_keys_only() {
        let ours = keys(&[1; 32]);
        let issued = ours.issue(&email("a@b.io"), "v".into()).expect("signed");
        let claims = ours.verify(&issued.token).expect("valid");
        assert_eq!(claims.sub, "a@b.io");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert!(matches!(
            keys(&[2; 32]).verify(&issued.token),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(ours.verify("a.b.c"), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let ours = keys(&[1; 32]);
        let now = unix_now();
        let claims = Claims {
            sub: "a@b.io".into(),
            iat: now - 100,
            exp: now - 1,
            ver: "v".into(),
        };
        let token = ours.sign(&claims).expect("signed");
        assert!(matches!(ours.verify(&token), Err(AuthError::Expired)));
    }

    #[test]
    fn the_version_changes_with_the_hash_and_the_generation() {
        let ours = keys(&[1; 32]);
        assert_eq!(ours.version("h", 0), ours.version("h", 0));
        assert_ne!(ours.version("h", 0), ours.version("h2", 0));
        assert_ne!(ours.version("h", 0), ours.version("h", 1));
        assert_ne!(ours.version("h", 0), keys(&[2; 32]).version("h", 0));
    }

    #[test]
    fn the_internal_credential_exists_only_when_protected_and_for_a_service() {
        let open =
            TokenKeys::of_service(&AuthConfig::open(DEFAULT_TOKEN_TTL), ServiceName::Message);
        assert!(open.internal_credential().value().is_none());
        assert!(keys(&[1; 32]).internal_credential().value().is_none());
        let on = of(&[1; 32], ServiceName::Message);
        let mut request = tonic::Request::new(());
        assert_eq!(caller_of(&on, &request), None);
        on.internal_credential().attach(&mut request);
        assert_eq!(caller_of(&on, &request), Some(ServiceName::Message));
        // Any service's keys recognise the caller; another secret's do not.
        assert_eq!(
            caller_of(&keys(&[1; 32]), &request),
            Some(ServiceName::Message)
        );
        assert_eq!(caller_of(&keys(&[2; 32]), &request), None);
    }

    #[test]
    fn a_credential_is_bound_to_the_name_it_was_derived_for() {
        let checker = keys(&[1; 32]);
        let mut request = tonic::Request::new(());
        of(&[1; 32], ServiceName::Frontend)
            .internal_credential()
            .attach(&mut request);
        assert_eq!(caller_of(&checker, &request), Some(ServiceName::Frontend));
        // frontend-service's value under another service's name is no one's.
        request.metadata_mut().insert(
            INTERNAL_CALLER_HEADER,
            "message-service".parse().expect("ASCII"),
        );
        assert_eq!(caller_of(&checker, &request), None);
        request.metadata_mut().insert(
            INTERNAL_CALLER_HEADER,
            "someone-else".parse().expect("ASCII"),
        );
        assert_eq!(caller_of(&checker, &request), None);
    }

    #[test]
    fn each_internal_credential_is_the_documented_hmac_of_the_secret_and_the_name() {
        // printf 'internal-service:<name>' | openssl dgst -sha256 -hmac '<secret>'
        let secret = b"an-auth-secret-of-at-least-32-bytes!!";
        for (service, expected) in [
            (
                ServiceName::User,
                "6c0af6dcc5666af02ca67db8d4098d67a111f75de457485a1cdefc340d89fccf",
            ),
            (
                ServiceName::Message,
                "a34a750d6015b765034c6f3450bc075747cf881eb444bf3b3a6dfe86d416ba19",
            ),
            (
                ServiceName::Notification,
                "e62a6525307cc896ba29a3c918cbde542d7d58b4b31c8721752dbdc60d0ecae5",
            ),
            (
                ServiceName::Frontend,
                "57cabe74c0e982883755b6d2313d2d0e929d09cae08a5aa3a930346493f55c71",
            ),
        ] {
            assert_eq!(
                of(secret, service).internal_credential().value(),
                Some(expected),
                "{service}"
            );
        }
    }
}
