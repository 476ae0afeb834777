//! Outbound gRPC channels: connected lazily (a peer may start after us), with a deadline on
//! every call, so a hung peer costs a bounded wait, never a stuck request, carrying the
//! request id of the call that made them and, when protection is on, the internal service
//! credential (see [`crate::auth`]), and counted in `grpc_client_requests_total`.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;
use tonic::{
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

/// Deadline of one outbound call, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The interceptor every outbound call goes through: the current request id and the service's
/// internal credential.
#[derive(Debug, Clone)]
pub struct Propagate {
    credential: InternalCredential,
}

impl Interceptor for Propagate {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut request = crate::request_id::propagate(request)?;
        self.credential.attach(&mut request);
        Ok(request)
    }
}

/// What generated clients are built on.
pub type GrpcChannel = InterceptedService<Measured, Propagate>;

/// A peer service as the contract names it: its name (in logs and metrics), the variable
/// holding its gRPC URL, and the URL used when the variable is unset.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub name: &'static str,
    pub var: &'static str,
    pub default_url: &'static str,
}

pub const USER_SERVICE: Peer = Peer {
    name: "user-service",
    var: "USER_SERVICE_GRPC_URL",
    default_url: "http://127.0.0.1:9797",
};
pub const NOTIFICATION_SERVICE: Peer = Peer {
    name: "notification-service",
    var: "NOTIFICATION_SERVICE_GRPC_URL",
    default_url: "http://127.0.0.1:9898",
};
pub const MESSAGE_SERVICE: Peer = Peer {
    name: "message-service",
    var: "MESSAGE_SERVICE_GRPC_URL",
    default_url: "http://127.0.0.1:9696",
};
pub const FRONTEND_SERVICE: Peer = Peer {
    name: "frontend-service",
    var: "FRONTEND_SERVICE_GRPC_URL",
    default_url: "http://127.0.0.1:3030",
};

/// The setting that says where a peer is: `--<peer>-grpc-url` / its variable, defaulting to
/// the contract's URL. A service flattens one per peer it calls.
macro_rules! peer_setting {
    ($setting:ident, $peer:ident, $flag:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, clap::Args)]
        pub struct $setting {
            #[doc = $doc]
            #[arg(id = $flag, long = $flag, env = $peer.var, default_value = $peer.default_url)]
            pub url: String,
        }

        impl $setting {
            /// A channel to the peer (see [`Peer::channel`]).
            pub fn channel(&self, credential: &InternalCredential) -> anyhow::Result<GrpcChannel> {
                $peer.channel(&self.url, credential)
            }
        }
    };
}

peer_setting!(
    UserServicePeer,
    USER_SERVICE,
    "user-service-grpc-url",
    "Where user-service's gRPC server is."
);
peer_setting!(
    NotificationServicePeer,
    NOTIFICATION_SERVICE,
    "notification-service-grpc-url",
    "Where notification-service's gRPC server is."
);
peer_setting!(
    MessageServicePeer,
    MESSAGE_SERVICE,
    "message-service-grpc-url",
    "Where message-service's gRPC server is."
);
peer_setting!(
    FrontendServicePeer,
    FRONTEND_SERVICE,
    "frontend-service-grpc-url",
    "Where frontend-service's gRPC server is."
);

impl Peer {
    /// A lazily connecting channel to this peer at `url`, whose calls time out after
    /// [`CALL_TIMEOUT`] and carry the current request id and `credential`
    /// (`TokenKeys::internal_credential`; none in open mode).
    pub fn channel(
        self,
        url: &str,
        credential: &InternalCredential,
    ) -> anyhow::Result<GrpcChannel> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|err| anyhow::anyhow!("invalid gRPC URL of {} {url:?}: {err}", self.name))?
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let propagate = Propagate {
            credential: credential.clone(),
        };
        let measured = Measured {
            peer: self.name,
            inner: endpoint.connect_lazy(),
        };
        Ok(InterceptedService::new(measured, propagate))
    }
}

/// The gRPC metadata key of the internal service credential.
pub const INTERNAL_CREDENTIAL_HEADER: &str = "x-internal-credential";
/// The gRPC metadata key naming the service that presents the credential.
pub const INTERNAL_CALLER_HEADER: &str = "x-internal-caller";
/// The gRPC metadata key in which frontend-service names the browser's address on the calls
/// it makes for its web inbox (believed only beside frontend-service's valid credential).
pub const CLIENT_ADDRESS_HEADER: &str = "x-client-address";

/// One of the four services, as the caller of another one's internal RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceName {
    User,
    Message,
    Notification,
    Frontend,
}

impl ServiceName {
    pub const ALL: [Self; 4] = [
        Self::User,
        Self::Message,
        Self::Notification,
        Self::Frontend,
    ];

    /// The name it presents in `x-internal-caller` (and in logs): `user-service`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user-service",
            Self::Message => "message-service",
            Self::Notification => "notification-service",
            Self::Frontend => "frontend-service",
        }
    }

    /// The service called `name`, if it is one of the four.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|service| service.as_str() == name)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The credential a service presents on its outbound gRPC calls: its name and the value
/// derived for that name (none in open mode).
#[derive(Clone, Default)]
pub struct InternalCredential(Option<(ServiceName, AsciiMetadataValue)>);

impl fmt::Debug for InternalCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some((service, _)) => write!(f, "InternalCredential({service}, ..)"),
            None => f.write_str("InternalCredential(none)"),
        }
    }
}

impl InternalCredential {
    pub(crate) fn new(value: Option<(ServiceName, AsciiMetadataValue)>) -> Self {
        Self(value)
    }

    /// The service this credential is of, if there is one.
    pub fn service(&self) -> Option<ServiceName> {
        self.0.as_ref().map(|(service, _)| *service)
    }

    /// Adds the credential, if there is one, to an outbound request's metadata: the caller's
    /// name in `x-internal-caller`, the value in `x-internal-credential`.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        if let Some((service, value)) = &self.0 {
            let metadata = request.metadata_mut();
            metadata.insert(
                INTERNAL_CALLER_HEADER,
                AsciiMetadataValue::from_static(service.as_str()),
            );
            metadata.insert(INTERNAL_CREDENTIAL_HEADER, value.clone());
        }
    }

    /// Whether a request with `headers` carries this credential: the same caller name and
    /// the same value (compared in constant time).
    pub(crate) fn is_carried_by(&self, headers: &HeaderMap) -> bool {
        let Some((service, expected)) = &self.0 else {
            return false;
        };
        let named = headers
            .get(INTERNAL_CALLER_HEADER)
            .is_some_and(|name| name.as_bytes() == service.as_str().as_bytes());
        let presented = headers
            .get(INTERNAL_CREDENTIAL_HEADER)
            .is_some_and(|presented| bool::from(expected.as_bytes().ct_eq(presented.as_bytes())));
        named && presented
    }

    #[cfg(test)]
    pub(crate) fn value(&self) -> Option<&str> {
        self.0.as_ref().and_then(|(_, value)| value.to_str().ok())
    }
}

/// A channel that records each call's peer, method, status code and duration. A tower
/// service rather than part of the interceptor, because only a service sees the response.
#[derive(Debug, Clone)]
pub struct Measured {
    peer: &'static str,
    inner: Channel,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<axum::http::Request<tonic::body::Body>> for Measured {
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, request: axum::http::Request<tonic::body::Body>) -> Self::Future {
        let peer = self.peer;
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let call = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            match call.await {
                Ok(response) => {
                    crate::metrics::grpc_client_request(peer, &method, code_of(&response), started);
                    Ok(response)
                }
                Err(err) => {
                    // The status the generated client will make of this error (a timeout
                    // becomes CANCELLED, a refused connection UNAVAILABLE).
                    let status = tonic::Status::from_error(err.into());
                    crate::metrics::grpc_client_request(peer, &method, status.code(), started);
                    Err(status.into())
                }
            }
        })
    }
}

/// The call's code as far as the response head tells: an error status is in the head (a
/// "trailers-only" reply); a head without one starts a successful reply.
fn code_of<B>(response: &axum::http::Response<B>) -> tonic::Code {
    match response.headers().get("grpc-status") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|code| code.parse::<i32>().ok())
            .map_or(tonic::Code::Unknown, tonic::Code::from),
        None if response.status().is_success() => tonic::Code::Ok,
        // Not a gRPC server answering (a proxy's error page, say).
        None => tonic::Code::Unknown,
    }
}
