//! The web inbox: a page at `GET /` (plain HTML, CSS and JavaScript embedded in the binary:
//! no CDN, no build step) and the same-origin API it calls under `/api/` (documented in
//! `/openapi.json`). The page reads the live feed with `EventSource` on `/live`; everything
//! else is one gRPC call per request to the service that owns the data ([`upstream`]).
//!
//! Every reply here carries strict security headers: a CSP of `default-src 'self'` (no inline
//! script or style, nothing from another origin), `frame-ancestors 'none'`, `nosniff`, no
//! referrer.

mod inbox;
mod session;
mod subscription;
mod upstream;

use axum::{
    Router,
    extract::Request,
    http::{HeaderName, HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use proto::{
    message_service::message_service_client::MessageServiceClient,
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::account_service_client::AccountServiceClient,
};
use service_runtime::{
    auth::Auth,
    grpc_client::{
        GrpcChannel, InternalCredential, MessageServicePeer, NotificationServicePeer,
        UserServicePeer,
    },
    limits,
};
use utoipa::openapi::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// What the page's handlers share; cheap to clone.
#[derive(Clone)]
pub struct Page {
    /// The gate, asked only who a session is for (`GET /api/config`).
    auth: Auth,
    /// Without frontend-service's credential: calls carry the browser's token.
    notifications: NotificationServiceClient<GrpcChannel>,
    /// Without frontend-service's credential: calls carry the browser's token.
    messages: MessageServiceClient<GrpcChannel>,
    /// With frontend-service's credential, so user-service believes the browser's address.
    accounts: AccountServiceClient<GrpcChannel>,
}

/// Where the page's peers are.
pub struct Peers<'a> {
    pub notification_service: &'a NotificationServicePeer,
    pub message_service: &'a MessageServicePeer,
    pub user_service: &'a UserServicePeer,
}

impl Page {
    /// The page's clients (connected lazily).
    pub fn new(auth: Auth, peers: &Peers<'_>) -> anyhow::Result<Self> {
        let browser = InternalCredential::default();
        let own = auth.keys().internal_credential();
        Ok(Self {
            notifications: NotificationServiceClient::new(
                peers.notification_service.channel(&browser)?,
            )
            .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
            messages: MessageServiceClient::new(peers.message_service.channel(&browser)?)
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
            accounts: AccountServiceClient::new(peers.user_service.channel(own)?)
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
            auth,
        })
    }
}

/// The page, its assets and its API, with their OpenAPI document.
pub fn router(page: Page) -> (Router, OpenApi) {
    let (router, api) = OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(script))
        .routes(routes!(style))
        .merge(session::routes())
        .merge(inbox::routes())
        .merge(subscription::routes())
        .with_state(page)
        .split_for_parts();
    (router.layer(middleware::from_fn(security_headers)), api)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Small, and replaced with the binary: revalidated on every load.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the web inbox (`/?email=<address>` opens that inbox directly in open mode).
#[utoipa::path(
    get,
    path = "/",
    tag = "web inbox",
    responses((status = 200, description = "The page", content_type = "text/html"))
)]
async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /app.js`: the page's script.
#[utoipa::path(
    get,
    path = "/app.js",
    tag = "web inbox",
    responses((status = 200, description = "The page's script", content_type = "text/javascript"))
)]
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /app.css`: the page's style sheet.
#[utoipa::path(
    get,
    path = "/app.css",
    tag = "web inbox",
    responses((status = 200, description = "The page's style sheet", content_type = "text/css"))
)]
async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The page's Content-Security-Policy: its own origin only, no inline code, never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
