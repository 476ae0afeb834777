//! The `user_service.UserService` gRPC API. Missing, empty or malformed fields are business
//! outcomes (status OK, flag false), as clients of the original expect; only a failure to do
//! the job (Redis unreachable, a bug) is an error status.

use proto::user_service::{
    AuthenticateRequest, AuthenticateResponse, CheckUserExistsRequest, CheckUserExistsResponse,
    ListUsersResponse, User, user_service_server::UserService,
};
use service_runtime::email::Email;
use tonic::{Request, Response, Status};

use crate::accounts::Accounts;

/// The gRPC handlers over the shared state.
pub struct UserGrpc {
    accounts: Accounts,
}

impl UserGrpc {
    pub fn new(accounts: Accounts) -> Self {
        Self { accounts }
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
        let AuthenticateRequest { email, password } = request.into_inner();
        let password = password.unwrap_or_default();
        let success = match well_formed(email.as_ref()) {
            Some(address) if !password.is_empty() => {
                self.accounts.authenticate(&address, &password).await?
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
