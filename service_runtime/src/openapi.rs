//! The OpenAPI 3.1 document of an HTTP server, served at `GET /openapi.json`.
//!
//! Each service describes its own endpoints where they are written: `#[utoipa::path]` on the
//! handler (parameters, bodies, replies by status) and `utoipa_axum::routes!` to route it, so a
//! route and its description cannot drift apart. [`document`] adds what every server has
//! (`/health`, `/metrics`, this document) and the replies any endpoint can give.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        Content, OpenApi, RefOr,
        info::Info,
        path::Operation,
        response::{Response as ResponseDoc, ResponseBuilder},
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Every error reply of every endpoint: `{"message": ..., "success": false}`.
///
/// Fields are in alphabetical order, the order `serde_json::json!` writes, so replies keep
/// the bytes they had before they were typed.
/// The descriptions every list endpoint and protected endpoint shares, written once.
pub mod describe {
    /// The optional `{"email"}` body of a list endpoint.
    pub const EMAIL_BODY: &str = "Read only when the query string has no `email` (clients of the original system send a body with GET)";
    /// 401 of a protected endpoint.
    pub const PROTECTED: &str =
        "Protection is on and the token is missing, malformed, forged or expired";
    /// 403 of a protected endpoint.
    pub const OTHERS: &str = "Protection is on and the token is another user's";
}

#[derive(Debug, Clone, Serialize, ToSchema)]
// Documents `additionalProperties: false`: a reply has no other field.
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": "User not found", "success": false}))]
pub struct ErrorReply {
    /// What is wrong, for a person to read.
    pub message: String,
    /// Always `false`.
    pub success: bool,
}

impl ErrorReply {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            success: false,
        }
    }
}

/// The document's JSON, serialized once.
#[derive(Clone)]
struct Document(Arc<str>);

/// Completes `api`, the service's own endpoints, with the replies any of them can give and
/// with `common` (the endpoints every server has), and routes `GET /openapi.json` to the result.
pub(crate) fn document(service: &'static str, api: OpenApi, common: OpenApi) -> Router {
    let mut api = api;
    add_common_replies(&mut api);
    api.merge(common);
    api.info = Info::new(service, env!("CARGO_PKG_VERSION"));
    api.info.description = Some(format!(
        "REST API of {service}. Every JSON reply carries `success`; error replies add `message`."
    ));
    let (router, api) = OpenApiRouter::with_openapi(api)
        .routes(routes!(openapi_json))
        .split_for_parts();
    let json = api
        .to_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"cannot serialize the document: {err}\"}}"));
    router.with_state(Document(json.into()))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json"))
)]
async fn openapi_json(State(document): State<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.0.to_string(),
    )
        .into_response()
}

/// Replies that do not depend on the endpoint: any one can find Redis unreachable (503) or hit
/// a bug (500), and any that reads a body refuses one over the size limit (413).
fn add_common_replies(api: &mut OpenApi) {
    let error = |description: &str| -> RefOr<ResponseDoc> {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorReply",
                )))),
            )
            .build()
            .into()
    };
    for item in api.paths.paths.values_mut() {
        let operations: [&mut Option<Operation>; 4] = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            responses
                .entry("503".into())
                .or_insert_with(|| error("Redis (or a peer) is unreachable; try again later"));
            responses
                .entry("500".into())
                .or_insert_with(|| error("An internal error; the cause is in the service's log"));
            let reads_body = operation.request_body.is_some();
            if reads_body {
                responses
                    .entry("413".into())
                    .or_insert_with(|| error("The body is larger than the limit (64 KiB)"));
            }
        }
    }
    let components = api.components.get_or_insert_with(Default::default);
    components
        .schemas
        .entry("ErrorReply".into())
        .or_insert_with(ErrorReply::schema);
}
