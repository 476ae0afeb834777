//! user-service: accounts over REST, authentication and lookups over gRPC.

service_runtime::service_main!(user_service);
