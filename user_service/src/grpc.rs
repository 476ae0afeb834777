//! The `user_service.UserService` gRPC API. Missing, empty or malformed fields are business
//! outcomes (status OK, flag false), as clients of the original expect; only a failure to do
//! the job (Redis unreachable, a bug) is an error status.
//!
//! Who may call what is [`ACCESS`]: when protection is on, `CheckUserExists` answers only
//! message-service and `TokenService.ValidateToken` only the services that check tokens
//! (message-, notification- and frontend-service), each by its own internal credential;
//! `ListUsers`, which no service calls, answers no one;
//! `AuthenticateUser` stays open to everyone, under the same brute-force limits as
//! `POST /login` (`RESOURCE_EXHAUSTED` past them, in both modes).

use proto::user_service::{
    AuthenticateRequest, AuthenticateResponse, CheckUserExistsRequest, CheckUserExistsResponse,
    ListUsersResponse, User, ValidateTokenRequest, ValidateTokenResponse,
    token_service_server::TokenService, user_service_server::UserService,
};
use service_runtime::{
    auth::{Access, AccessTable, Auth, ServiceName},
    email::Email,
};
use tonic::{Request, Response, Status};

use crate::{accounts::Accounts, login::Logins};

/// Who may call which RPC of user-service's gRPC server.
pub const ACCESS: AccessTable = AccessTable(&[
    (
        "/user_service.UserService/CheckUserExists",
        Access::Services(&[ServiceName::Message]),
    ),
    ("/user_service.UserService/AuthenticateUser", Access::Public),
    // No service lists users.
    ("/user_service.UserService/ListUsers", Access::Services(&[])),
    (
        "/user_service.TokenService/ValidateToken",
        Access::Services(&[
            ServiceName::Message,
            ServiceName::Notification,
            ServiceName::Frontend,
        ]),
    ),
]);

/// The `UserService` handlers over the shared state.
pub struct UserGrpc {
    accounts: Accounts,
    logins: Logins,
}

impl UserGrpc {
    pub fn new(accounts: Accounts, logins: Logins) -> Self {
        Self { accounts, logins }
    }
}

/// The request's email if it is present and well-formed.
fn well_formed(email: Option<&String>) -> Option<Email> {
    email.and_then(|raw| Email::parse(raw.as_str()).ok())
}

#[tonic::async_trait]
impl UserService for UserGrpc {
    #[tracing::instrument(skip_all, fields(email = request.get_ref().email.as_deref().unwrap_or("")))]
    async fn check_user_exists(
        &self,
        request: Request<CheckUserExistsRequest>,
    ) -> Result<Response<CheckUserExistsResponse>, Status> {
        let exists = match well_formed(request.get_ref().email.as_ref()) {
            Some(email) => self.accounts.exists(&email).await?,
            None => false,
        };
        Ok(Response::new(CheckUserExistsResponse {
            exists: Some(exists),
        }))
    }

    #[tracing::instrument(skip_all, fields(email = request.get_ref().email.as_deref().unwrap_or("")))]
    async fn authenticate_user(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let from = request.remote_addr().map(|addr| addr.ip());
        let AuthenticateRequest { email, password } = request.into_inner();
        let password = password.unwrap_or_default();
        let success = match well_formed(email.as_ref()) {
            Some(address) if !password.is_empty() => {
                self.logins.authenticate(&address, &password, from).await?
            }
            _ => false,
        };
        tracing::info!(success, "authentication attempt");
        Ok(Response::new(AuthenticateResponse {
            email,
            success: Some(success),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_users(
        &self,
        _request: Request<()>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let users = self
            .accounts
            .list()
            .await?
            .into_iter()
            .map(|user| User {
                name: Some(user.name),
                email: Some(user.email),
                password: None,
            })
            .collect();
        Ok(Response::new(ListUsersResponse { users }))
    }
}

/// `user_service.TokenService`, served beside `UserService`.
pub struct TokenGrpc {
    logins: Logins,
    auth: Auth,
}

impl TokenGrpc {
    pub fn new(logins: Logins, auth: Auth) -> Self {
        Self { logins, auth }
    }
}

#[tonic::async_trait]
impl TokenService for TokenGrpc {
    /// Whether a token is still good: signed by this system, unexpired, and its user still
    /// at that address with the same password. A business answer (`valid`), never an error
    /// status for a bad token.
    #[tracing::instrument(skip_all)]
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let token = request.into_inner().token.unwrap_or_default();
        let claims = match self.auth.keys().verify(&token) {
            Ok(claims) if self.logins.token_is_current(&claims).await? => Some(claims),
            _ => None,
        };
        Ok(Response::new(ValidateTokenResponse {
            valid: Some(claims.is_some()),
            email: claims.map(|claims| claims.sub),
        }))
    }
}
