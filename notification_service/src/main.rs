//! notification-service: subscriptions, stored notifications, pushes to frontend-service.

service_runtime::service_main!(notification_service);
