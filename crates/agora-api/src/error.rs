use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// An API error: HTTP status plus a JSON body `{code, message}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 with a code.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 500: the node failed.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl From<agora_state::TxError> for ApiError {
    fn from(e: agora_state::TxError) -> Self {
        let status = match e {
            agora_state::TxError::MempoolFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            agora_state::TxError::Duplicate { .. } => StatusCode::CONFLICT,
            agora_state::TxError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<agora_chain::SubmitError> for ApiError {
    fn from(e: agora_chain::SubmitError) -> Self {
        match e {
            agora_chain::SubmitError::Tx(e) => e.into(),
            agora_chain::SubmitError::Node(m) => ApiError::internal(m),
        }
    }
}

impl From<agora_store::Error> for ApiError {
    fn from(e: agora_store::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<agora_chain::Error> for ApiError {
    fn from(e: agora_chain::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(Body {
                code: &self.code,
                message: &self.message,
            }),
        )
            .into_response()
    }
}
