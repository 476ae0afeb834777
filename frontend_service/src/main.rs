//! frontend-service: receives the notifications notification-service pushes.

service_runtime::service_main!(frontend_service);
