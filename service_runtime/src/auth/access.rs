//! Who may call which RPC: one declared table per gRPC server, enforced by a tower layer
//! before any handler runs, so no handler can forget its check.
//!
//! A server whose table misses one of its RPCs refuses to start ([`AccessTable::covers`]),
//! and at run time an RPC the table does not name is refused, never let through.

use std::task::{Context, Poll};

use axum::http::{Request, Response, header};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use prost::Message as _;
use tonic::{Status, body::Body};

use super::{Auth, AuthError, Caller};
use crate::{grpc_client::ServiceName, limits};

/// Reads the address a request names from its encoded protobuf message.
pub type OwnerOf = fn(&[u8]) -> Result<Option<String>, prost::DecodeError>;

/// Who may call one RPC when protection is on (in open mode everyone may call everything).
#[derive(Clone, Copy)]
pub enum Access {
    /// Anyone: the RPC checks what it needs itself (`AuthenticateUser` checks a password).
    Public,
    /// These services only: the request carries the internal credential of one of them
    /// (an empty list: no one, when protection is on).
    Services(&'static [ServiceName]),
    /// The user the request names, with a valid token of that user.
    Owner(OwnerOf),
    /// These services, or the user the request names.
    ServicesOrOwner(&'static [ServiceName], OwnerOf),
}

/// The [`OwnerOf`] of a request type: `owner!(GetMessagesRequest, |r| r.user_email)`.
#[macro_export]
macro_rules! owner {
    ($request:ty, |$r:ident| $field:expr) => {
        |bytes: &[u8]| {
            <$request as $crate::auth::access::prost::Message>::decode(bytes).map(|$r| $field)
        }
    };
}

#[doc(hidden)]
pub use prost;

/// Every RPC of a gRPC server (full method path, `/package.Service/Method`) and who may call it.
#[derive(Clone, Copy)]
pub struct AccessTable(pub &'static [(&'static str, Access)]);

/// What every server also answers, to anyone: health and reflection.
const INFRASTRUCTURE: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

impl AccessTable {
    fn rule(&self, path: &str) -> Option<Access> {
        self.0
            .iter()
            .find(|(method, _)| *method == path)
            .map(|(_, access)| *access)
    }

    /// Checks that the table names every RPC of `services` (full names, as in
    /// `NamedService::NAME`) in the contract's descriptor set, and nothing else.
    pub fn covers(&self, services: &[&str]) -> anyhow::Result<()> {
        let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET)?;
        let mut declared = Vec::new();
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                if services.contains(&full.as_str()) {
                    declared.extend(
                        service
                            .method
                            .iter()
                            .map(|method| format!("/{full}/{}", method.name())),
                    );
                }
            }
        }
        let missing: Vec<&str> = declared
            .iter()
            .map(String::as_str)
            .filter(|path| self.rule(path).is_none())
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "no access rule for the RPCs {missing:?}: add them to the service's AccessTable"
        );
        let unknown: Vec<&str> = self
            .0
            .iter()
            .map(|(path, _)| *path)
            .filter(|path| !declared.iter().any(|declared| declared == path))
            .collect();
        anyhow::ensure!(
            unknown.is_empty(),
            "access rules for RPCs the server does not serve: {unknown:?}"
        );
        Ok(())
    }
}

/// The layer that enforces a table; installed by `ServiceBuilder::grpc_access`.
#[derive(Clone)]
pub struct Guard {
    auth: Auth,
    table: AccessTable,
}

impl Guard {
    pub fn new(auth: Auth, table: AccessTable) -> Self {
        Self { auth, table }
    }

    /// The request, let through (with its [`Caller`] in its extensions where a token was
    /// checked, [`Caller::Anyone`] in open mode), or the refusal.
    async fn admit(&self, mut request: Request<Body>) -> Result<Request<Body>, Status> {
        if !self.auth.is_on() {
            request.extensions_mut().insert(Caller::Anyone);
            return Ok(request);
        }
        let path = request.uri().path();
        let Some(access) = self.table.rule(path) else {
            if INFRASTRUCTURE.iter().any(|prefix| path.starts_with(prefix)) {
                return Ok(request);
            }
            return Err(Status::permission_denied(format!(
                "{path} has no access rule on this server"
            )));
        };
        let (services, owner_of): (&[ServiceName], _) = match access {
            Access::Public => return Ok(request),
            Access::Services(services) => (services, None),
            Access::Owner(owner_of) => (&[], Some(owner_of)),
            Access::ServicesOrOwner(services, owner_of) => (services, Some(owner_of)),
        };
        // A service's credential opens only the RPCs whose list names that service.
        match self.auth.keys().internal_caller(request.headers()) {
            Some(service) if services.contains(&service) => return Ok(request),
            Some(service) => {
                return Err(AuthError::ServiceNotAllowed {
                    service: service.as_str(),
                }
                .into());
            }
            None => {}
        }
        let Some(owner_of) = owner_of else {
            return Err(AuthError::NotInternal.into());
        };
        let authorization = match request.headers().get(header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| AuthError::Invalid("not ASCII"))?
                    .to_owned(),
            ),
        };
        let caller = self.auth.caller(authorization.as_deref()).await?;
        let (parts, body) = request.into_parts();
        let frame = read_frame(body).await?;
        let named = owner_of(&frame[FRAME_HEADER_BYTES..]).map_err(|err| {
            Status::invalid_argument(format!("failed to decode Protobuf message: {err}"))
        })?;
        caller.authorize_raw(named.as_deref())?;
        let mut request = Request::from_parts(parts, Body::new(Full::new(frame)));
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// A gRPC message frame: a compression flag byte and a 4-byte big-endian length.
const FRAME_HEADER_BYTES: usize = 5;

/// The one message frame of a unary request (every RPC here takes one message), whole.
async fn read_frame(body: Body) -> Result<axum::body::Bytes, Status> {
    let too_large = || {
        Status::out_of_range(format!(
            "the request is larger than {} bytes",
            limits::GRPC_MAX_MESSAGE_BYTES
        ))
    };
    let frame = Limited::new(body, limits::GRPC_MAX_MESSAGE_BYTES + FRAME_HEADER_BYTES)
        .collect()
        .await
        .map_err(|err| match err.downcast::<Status>() {
            Ok(status) => *status,
            Err(err) if err.is::<http_body_util::LengthLimitError>() => too_large(),
            Err(err) => Status::invalid_argument(format!("cannot read the request: {err}")),
        })?
        .to_bytes();
    let malformed = || {
        Status::invalid_argument(
            "failed to decode Protobuf message: not one uncompressed gRPC message frame",
        )
    };
    let header = frame.get(..FRAME_HEADER_BYTES).ok_or_else(malformed)?;
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if header[0] != 0 || frame.len() != FRAME_HEADER_BYTES + length {
        return Err(malformed());
    }
    Ok(frame)
}

impl<S> tower::Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            guard: self.clone(),
            inner,
        }
    }
}

/// A gRPC server behind its [`Guard`].
#[derive(Clone)]
pub struct Guarded<S> {
    guard: Guard,
    inner: S,
}

impl<S> tower::Service<Request<Body>> for Guarded<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone is the one made ready by `poll_ready`'s caller; keep that one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.admit(request).await {
                Ok(request) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_SERVICE: &str = "user_service.UserService";

    #[test]
    fn a_table_must_name_every_rpc_of_its_services_and_nothing_else() {
        let complete = AccessTable(&[
            (
                "/user_service.UserService/CheckUserExists",
                Access::Services(&[]),
            ),
            ("/user_service.UserService/AuthenticateUser", Access::Public),
            ("/user_service.UserService/ListUsers", Access::Services(&[])),
        ]);
        complete.covers(&[USER_SERVICE]).expect("complete");

        let missing =
            AccessTable(&[("/user_service.UserService/ListUsers", Access::Services(&[]))]);
        let err = missing
            .covers(&[USER_SERVICE])
            .expect_err("two RPCs missing");
        assert!(err.to_string().contains("CheckUserExists"), "{err}");

        let unknown = AccessTable(&[("/user_service.UserService/DropAll", Access::Public)]);
        assert!(unknown.covers(&[]).is_err());
    }

    #[test]
    fn an_owner_rule_reads_the_named_field_of_the_encoded_request() {
        let owner: OwnerOf = crate::owner!(
            proto::frontend_service::WatchNotificationsRequest,
            |request| request.email
        );
        let request = proto::frontend_service::WatchNotificationsRequest {
            email: Some("a@b.io".into()),
            after: None,
        };
        assert_eq!(
            owner(&request.encode_to_vec()).expect("decodes"),
            Some("a@b.io".to_owned())
        );
        assert!(owner(b"\xff\xff\xff").is_err());
    }

    #[tokio::test]
    async fn a_request_body_must_be_exactly_one_uncompressed_frame() {
        let frame =
            |bytes: &'static [u8]| Body::new(Full::new(axum::body::Bytes::from_static(bytes)));
        assert!(read_frame(frame(b"\x00\x00\x00\x00\x02hi")).await.is_ok());
        for bad in [
            &b""[..],
            b"\x00\x00\x00",
            b"\x01\x00\x00\x00\x02hi",
            b"\x00\x00\x00\x00\x05hi",
        ] {
            let status = read_frame(frame(bad)).await.expect_err("malformed");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }
}
