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
//!
//! `AccountService` (`RegisterUser`, `LogIn`) is `POST /users` and `POST /login` over gRPC,
//! for frontend-service's web inbox: open to everyone, the same code paths and limits.

use std::net::IpAddr;

use proto::user_service::{
    AuthenticateRequest, AuthenticateResponse, CheckUserExistsRequest, CheckUserExistsResponse,
    ListUsersResponse, LogInRequest, LogInResponse, RegisterUserRequest, RegisterUserResponse,
    User, ValidateTokenRequest, ValidateTokenResponse, account_service_server::AccountService,
    token_service_server::TokenService, user_service_server::UserService,
};
use service_runtime::{
    auth::{Access, AccessTable, Auth, ServiceName},
    email::Email,
    grpc_client::CLIENT_ADDRESS_HEADER,
};
use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    domain::{NewUser, NewUserBody, parse_email},
    login::Logins,
};

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
    // Sign-up and login are open, as POST /users and POST /login are.
    ("/user_service.AccountService/RegisterUser", Access::Public),
    ("/user_service.AccountService/LogIn", Access::Public),
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

/// `user_service.AccountService`, served beside `UserService`.
pub struct AccountGrpc {
    accounts: Accounts,
    logins: Logins,
    auth: Auth,
}

impl AccountGrpc {
    pub fn new(accounts: Accounts, logins: Logins, auth: Auth) -> Self {
        Self {
            accounts,
            logins,
            auth,
        }
    }

    /// The address the per-address limits count: the TCP peer's, or, on a call that carries
    /// frontend-service's valid internal credential, the browser's address it names in
    /// `x-client-address` (every page user would otherwise share frontend-service's one
    /// allowance). In open mode there is no credential, so nobody can claim another address.
    fn client_addr<T>(&self, request: &Request<T>) -> Option<IpAddr> {
        let peer = request.remote_addr().map(|addr| addr.ip());
        let headers = request.metadata().clone().into_headers();
        if self.auth.keys().internal_caller(&headers) != Some(ServiceName::Frontend) {
            return peer;
        }
        headers
            .get(CLIENT_ADDRESS_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .or(peer)
    }
}

#[tonic::async_trait]
impl AccountService for AccountGrpc {
    /// `POST /users` over gRPC: the same validation, password policy and sign-up allowance.
    #[tracing::instrument(skip_all, fields(email = request.get_ref().email.as_deref().unwrap_or("")))]
    async fn register_user(
        &self,
        request: Request<RegisterUserRequest>,
    ) -> Result<Response<RegisterUserResponse>, Status> {
        let from = self.client_addr(&request);
        let RegisterUserRequest {
            email,
            password,
            name,
        } = request.into_inner();
        let body = NewUserBody {
            email: email.unwrap_or_default(),
            password: password.unwrap_or_default(),
            name: name.unwrap_or_default(),
        };
        let record = self.accounts.create(NewUser::try_from(body)?, from).await?;
        tracing::info!(email = record.email, "user created");
        Ok(Response::new(RegisterUserResponse {
            email: Some(record.email),
            name: Some(record.name),
        }))
    }

    /// `POST /login` over gRPC: the same checks and brute-force limits.
    #[tracing::instrument(skip_all, fields(email = request.get_ref().email.as_deref().unwrap_or("")))]
    async fn log_in(
        &self,
        request: Request<LogInRequest>,
    ) -> Result<Response<LogInResponse>, Status> {
        let from = self.client_addr(&request);
        let LogInRequest { email, password } = request.into_inner();
        let email = parse_email("email", email.unwrap_or_default())?;
        let issued = self
            .logins
            .login(&email, &password.unwrap_or_default(), from)
            .await;
        tracing::info!(success = issued.is_ok(), "login attempt");
        let issued = issued?;
        Ok(Response::new(LogInResponse {
            token: Some(issued.token),
            expires_at: Some(issued.expires_at),
            email: Some(email.into_string()),
        }))
    }
}
