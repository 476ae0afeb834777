//! The request id that lets one request be followed through every service's logs: taken from
//! the incoming `x-request-id` (HTTP header or gRPC metadata) or made up, held for the
//! request's task, and sent along as `x-request-id` metadata on every outbound gRPC call.

use std::{future::Future, sync::Arc};

use axum::http::HeaderMap;

/// The header / metadata key carrying the id.
pub const HEADER: &str = "x-request-id";
/// Longest id taken from a client; a longer or odd one is replaced by a fresh id.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The client's id if it is a sane one (printable ASCII, at most 128 bytes), else a new UUID.
pub fn from_headers(headers: &HeaderMap) -> Arc<str> {
    headers
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string().into(), Arc::from)
}

/// The id of the request this task works for, if any.
pub fn current() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Runs `work` as part of the request `id`.
pub fn scope<F: Future>(id: Arc<str>, work: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, work)
}

/// `work` carrying this task's request id (if any), for spawning it as a task of its own.
pub fn carry<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let id = current().unwrap_or_else(|| Arc::from("-"));
    scope(id, work)
}

/// A gRPC client interceptor that sends the current request id along.
pub fn propagate(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(id) = current()
        && let Ok(value) = id.parse()
    {
        request.metadata_mut().insert(HEADER, value);
    }
    Ok(request)
}
