//! Size limits on what clients send, so nothing stored or relayed can outgrow what the
//! system (and a default gRPC client, 4 MiB per message) can handle. Every limit answers with a
//! clear refusal and stores nothing; docs/operations.md, "Limits and timeouts", lists them.

/// Longest string field other than emails and message content (names, passwords), in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;
/// Longest notification id a caller may choose, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Default longest message content (`MAX_MESSAGE_BYTES`), in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest gRPC message a server decodes (requests) and a client decodes (replies), set
/// explicitly on every server and client; message-service raises it to fit
/// `MAX_MESSAGE_BYTES` plus the rest of a request.
pub const GRPC_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// `value` if it is at most `max` bytes, else a refusal naming `field` and the limit.
pub fn within(field: &str, value: String, max: usize) -> Result<String, String> {
    if value.len() > max {
        Err(format!("{field} is longer than {max} bytes"))
    } else {
        Ok(value)
    }
}
