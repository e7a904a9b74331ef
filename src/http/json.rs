//! The JSON body extractor (spec README §3.2): an empty body reads as `{}`; a non-empty one must
//! be a JSON object sent as `application/json` (or `+json`); type errors name the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                ApiError::new(
                    ErrorCode::VALIDATION_ERROR,
                    "The request body could not be read",
                )
                .with_reason("invalid-body")
            }
        })?;
        parse_body(content_type.as_deref(), &bytes).map(ApiJson)
    }
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PAYLOAD_TOO_LARGE,
        "The request body is larger than PEAQOS_MAX_BODY_BYTES allows",
    )
}

fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub fn parse_body<T: DeserializeOwned>(
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<T, ApiError> {
    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        if !content_type.is_some_and(is_json_media_type) {
            return Err(ApiError::new(
                ErrorCode::VALIDATION_ERROR,
                "The request body must be sent as application/json",
            )
            .with_reason("unsupported-content-type"));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => {
                return Err(ApiError::new(
                    ErrorCode::VALIDATION_ERROR,
                    "The request body must be a JSON object",
                )
                .with_reason("invalid-json"));
            }
            Err(err) => {
                return Err(ApiError::new(
                    ErrorCode::VALIDATION_ERROR,
                    format!("The request body is not valid JSON: {err}"),
                )
                .with_reason("invalid-json"));
            }
        }
    };
    decode(value)
}

/// Decodes a JSON object already read (and checked) as `T`, with the errors of [`ApiJson`]:
/// control characters refused, and type errors naming the field.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    super::validate::check_json_strings(&value)?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut field = err.path().to_string();
        let message = err.inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            field = if field == "." {
                name.to_string()
            } else {
                format!("{field}.{name}")
            };
        }
        let constraint = if message.starts_with("missing field") {
            "required"
        } else {
            "type"
        };
        ApiError::validation(&field, constraint, format!("{field}: {message}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Policy {
        per_transaction_limit: Option<f64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        name: String,
        delegation_policy: Option<Policy>,
    }

    fn field_of(err: ApiError) -> String {
        err.details["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        let err = parse_body::<Body>(Some("application/json"), b"").unwrap_err();
        assert_eq!(field_of(err), "name");
        let ok: serde_json::Map<String, Value> = parse_body(None, b"  ").unwrap();
        assert!(ok.is_empty());
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        let err = parse_body::<Body>(
            Some("application/json; charset=utf-8"),
            br#"{"name":"x","delegationPolicy":{"perTransactionLimit":"ten"}}"#,
        )
        .unwrap_err();
        assert_eq!(field_of(err), "delegationPolicy.perTransactionLimit");
    }

    #[test]
    fn malformed_and_non_object_json() {
        for body in [&b"{"[..], b"[1,2]", b"\"str\""] {
            let err = parse_body::<Body>(Some("application/json"), body).unwrap_err();
            assert_eq!(err.details["reason"], "invalid-json");
        }
    }

    #[test]
    fn content_type_is_checked_for_non_empty_bodies() {
        let err = parse_body::<Body>(Some("text/plain"), br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(err.details["reason"], "unsupported-content-type");
        assert!(
            parse_body::<Body>(Some("application/merge-patch+json"), br#"{"name":"x"}"#).is_ok()
        );
    }
}
