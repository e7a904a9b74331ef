//! The one error type of the API. The code → HTTP status table (spec README §3.12) lives here and
//! nowhere else; [`ApiError`] renders the error envelope.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

macro_rules! error_codes {
    ($($variant:ident => $status:literal,)*) => {
        /// Every error code the server sends, with its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => stringify!($variant),)* }
            }

            pub fn status(self) -> StatusCode {
                let code = match self { $(ErrorCode::$variant => $status,)* };
                StatusCode::from_u16(code).expect("valid status in the code table")
            }
        }
    };
}

error_codes! {
    VALIDATION_ERROR => 400,
    MACHINE_IDENTITY_PROOF_REQUIRED => 400,
    AGENT_PAIRING_PROOF_REQUIRED => 400,
    PAYMENT_TRANSFER_NOT_FOUND => 400,
    AUTH_REQUIRED => 401,
    AUTH_INVALID => 401,
    AGENT_AUTH_REQUIRED => 401,
    AGENT_AUTH_INVALID => 401,
    AGENT_AUTH_EXPIRED => 401,
    MACHINE_IDENTITY_PROOF_INVALID => 401,
    MACHINE_IDENTITY_PROOF_EXPIRED => 401,
    AGENT_PAIRING_PROOF_INVALID => 401,
    AGENT_PAIRING_PROOF_EXPIRED => 401,
    PAYMENT_REQUIRED => 402,
    PAYMENT_TX_FAILED => 402,
    AGENT_POLICY_DENIED => 403,
    AGENT_SPEND_LIMIT_EXCEEDED => 403,
    AGENT_DAILY_LIMIT_EXCEEDED => 403,
    AGENT_PAIRING_REQUIRED => 403,
    AGENT_PAIRING_INACTIVE => 403,
    MACHINE_NOT_ACTIVATED => 403,
    NOT_FOUND => 404,
    METHOD_NOT_ALLOWED => 405,
    MACHINE_NOT_ACTIVE => 409,
    MACHINE_IDENTITY_EXISTS => 409,
    MACHINE_IDENTITY_IMMUTABLE => 409,
    OPEN_MARKET_ORDERS => 409,
    QUOTE_EXPIRED => 409,
    ROUTE_REQUIRED => 409,
    ORDER_CLOSED => 409,
    ORDER_NOT_DELIVERED => 409,
    PAYMENT_NOT_MINED => 409,
    IDEMPOTENCY_CONFLICT => 409,
    PAYLOAD_TOO_LARGE => 413,
    EXECUTION_UNSUPPORTED => 422,
    RATE_LIMITED => 429,
    INTERNAL_ERROR => 500,
    PAYMENT_RPC_ERROR => 502,
    ENDPOINT_UNREACHABLE => 502,
    PEAQOS_IDENTITY_UNAVAILABLE => 503,
    AGENT_PAIRING_UNAVAILABLE => 503,
    PAYMENT_RPC_REQUIRED => 503,
    SERVICE_UNAVAILABLE => 503,
}

/// The errors a route can answer beyond those every route can (spec README §3.12), by code. The
/// OpenAPI document groups them by status (`openapi.rs`).
pub type RouteErrors = &'static [(&'static str, &'static str, &'static [ErrorCode])];

/// The spec's shorthands, for [`RouteErrors`] tables.
pub mod sets {
    use super::ErrorCode::{self, *};

    /// "the Gate B errors".
    pub const GATE_B: &[ErrorCode] = &[
        NOT_FOUND,
        MACHINE_NOT_ACTIVE,
        MACHINE_IDENTITY_PROOF_REQUIRED,
        MACHINE_NOT_ACTIVATED,
        PEAQOS_IDENTITY_UNAVAILABLE,
    ];
    /// "the token errors" (platform auth answers when there is no token).
    pub const TOKEN: &[ErrorCode] = &[
        AGENT_AUTH_REQUIRED,
        AGENT_AUTH_INVALID,
        AGENT_AUTH_EXPIRED,
        AGENT_PAIRING_INACTIVE,
        AGENT_PAIRING_UNAVAILABLE,
        AUTH_REQUIRED,
        AUTH_INVALID,
    ];
    /// "the Gate C errors" beyond Gate B.
    pub const GATE_C: &[ErrorCode] = &[AGENT_PAIRING_REQUIRED, AGENT_PAIRING_INACTIVE];
}

/// The error envelope every error answers with (OpenAPI schema).
#[derive(utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorObject,
}

#[derive(utoipa::ToSchema)]
pub struct ErrorObject {
    /// One of the codes of the code table, e.g. `NOT_FOUND`.
    pub code: String,
    pub message: String,
    /// `field`, `constraint`, `reason`, `resource`, `id`, `status`, … when they apply.
    pub details: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// The fixed message of every `INTERNAL_ERROR`: internals stay in the logs.
const INTERNAL_MESSAGE: &str = "Internal server error";

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Map<String, Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Adds one `details` entry.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn with_reason(self, reason: &str) -> Self {
        self.with("reason", reason)
    }

    /// `VALIDATION_ERROR` naming the offending field and the rule it broke.
    pub fn validation(field: &str, constraint: &str, message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::VALIDATION_ERROR, message)
            .with("field", field)
            .with("constraint", constraint)
    }

    pub fn not_found(resource: &str, id: &str) -> Self {
        let mut label = resource.replace('-', " ");
        if let Some(first) = label.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        ApiError::new(ErrorCode::NOT_FOUND, format!("{label} not found"))
            .with("resource", resource)
            .with("id", id)
    }

    /// An unexpected failure. The cause is logged here; the client sees only the fixed message.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        ApiError::new(ErrorCode::INTERNAL_ERROR, INTERNAL_MESSAGE)
    }

    pub fn service_unavailable() -> Self {
        ApiError::new(
            ErrorCode::SERVICE_UNAVAILABLE,
            "The database is unavailable; try again shortly",
        )
    }

    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if !self.details.is_empty() {
            error["details"] = Value::Object(self.details.clone());
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = crate::http::json(self.code.status(), &self.body());
        if self.code == ErrorCode::RATE_LIMITED {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::store::is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return ApiError::service_unavailable();
        }
        ApiError::internal("database error", err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_client_or_server_error_status() {
        for code in ErrorCode::ALL {
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?}"
            );
        }
        assert_eq!(ErrorCode::ALL.len(), 43);
    }

    #[test]
    fn table_matches_the_spec() {
        use ErrorCode::*;
        for (code, status) in [
            (VALIDATION_ERROR, 400),
            (PAYMENT_TRANSFER_NOT_FOUND, 400),
            (MACHINE_IDENTITY_PROOF_INVALID, 401),
            (PAYMENT_TX_FAILED, 402),
            (MACHINE_NOT_ACTIVATED, 403),
            (METHOD_NOT_ALLOWED, 405),
            (IDEMPOTENCY_CONFLICT, 409),
            (PAYLOAD_TOO_LARGE, 413),
            (EXECUTION_UNSUPPORTED, 422),
            (RATE_LIMITED, 429),
            (ENDPOINT_UNREACHABLE, 502),
            (PEAQOS_IDENTITY_UNAVAILABLE, 503),
            (SERVICE_UNAVAILABLE, 503),
        ] {
            assert_eq!(code.status().as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn envelope_shape() {
        let err = ApiError::not_found("machine", "mach_1");
        assert_eq!(
            err.body(),
            json!({"error": {"code": "NOT_FOUND", "message": "Machine not found",
                   "details": {"resource": "machine", "id": "mach_1"}}})
        );
        let bare = ApiError::new(ErrorCode::AUTH_REQUIRED, "x").body();
        assert!(bare["error"].get("details").is_none());
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = ApiError::internal("ctx", "password=hunter2");
        assert_eq!(err.message, INTERNAL_MESSAGE);
        assert!(!err.body().to_string().contains("hunter2"));
    }
}
