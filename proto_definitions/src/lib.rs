//! Generated gRPC code for the four services, compiled once for the whole workspace.
//!
//! Module names follow the proto packages, so `proto::user_service::User` is
//! `user_service.User` on the wire.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// `package user_service;` — users, authentication, existence checks.
pub mod user_service {
    tonic::include_proto!("user_service");
}

/// `package message_service;` — sending and reading messages.
pub mod message_service {
    tonic::include_proto!("message_service");
}

/// `package notification_service;` — notifications and subscriptions.
pub mod notification_service {
    tonic::include_proto!("notification_service");
}

/// `package frontend_service;` — where notifications are pushed to.
pub mod frontend_service {
    tonic::include_proto!("frontend_service");
}

/// Encoded `FileDescriptorSet` of all four files, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));

/// A stored notification (as notification-service lists it) as frontend-service sends it:
/// the two messages have the same fields.
impl From<notification_service::Notification> for frontend_service::Notification {
    fn from(stored: notification_service::Notification) -> Self {
        Self {
            sender_email: stored.sender_email,
            receiver_email: stored.receiver_email,
            timestamp: stored.timestamp,
            read: stored.read,
            notification_id: stored.notification_id,
            cursor: stored.cursor,
        }
    }
}
