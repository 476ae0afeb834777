//! message-service: sends and lists messages between users.

service_runtime::service_main!(message_service);
