//! The request of each executor (spec orders-and-payments.md §6.2): the `qvac` chat completion,
//! other runtime providers, and provider HTTP calls with `{placeholder}` templates, query or body
//! input, credential headers and request-scoped payment headers.

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use super::Inputs;
use crate::catalog::model::{Service, ServiceEndpoint};
use crate::clients::provider::{CALL_TIMEOUT, ProviderRequest};
use crate::clients::runtime::{API_KEY_HEADER, AuthType};
use crate::error::{ApiError, ApiResult};
use crate::runtime::model::EndpointRow;

/// The headers a request-scoped payment can set.
pub const PAYMENT_HEADER_NAMES: &[&str] = &[
    "payment-signature",
    "x-payment",
    "authorization",
    "sign-in-with-x",
];

/// OpenAI parameter names that 0.2.0 clients camel-case (`max_tokens` arrives as `maxTokens`):
/// turned back so an OpenAI-compatible runtime understands them.
const OPENAI_SNAKE: &[(&str, &str)] = &[
    ("maxTokens", "max_tokens"),
    ("maxCompletionTokens", "max_completion_tokens"),
    ("topP", "top_p"),
    ("topK", "top_k"),
    ("frequencyPenalty", "frequency_penalty"),
    ("presencePenalty", "presence_penalty"),
    ("responseFormat", "response_format"),
    ("toolChoice", "tool_choice"),
    ("parallelToolCalls", "parallel_tool_calls"),
    ("logitBias", "logit_bias"),
    ("topLogprobs", "top_logprobs"),
    ("streamOptions", "stream_options"),
];

fn invalid_request(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(field, "required", message)
}

fn bad_header() -> ApiError {
    ApiError::validation(
        "credentials",
        "header value",
        "A credential or payment value cannot be sent as an HTTP header",
    )
}

fn request(method: Method, url: Url, body: Option<Value>) -> ProviderRequest {
    ProviderRequest {
        method,
        url,
        headers: HeaderMap::new(),
        body,
        timeout: CALL_TIMEOUT,
    }
}

fn parse_url(text: &str) -> ApiResult<Url> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(url),
        _ => Err(ApiError::new(
            crate::error::ErrorCode::EXECUTION_UNSUPPORTED,
            "The provider URL of this service is not a valid http(s) URL",
        )
        .with_reason("invalid-provider-url")),
    }
}

/// `Authorization: Bearer` / `x-api-key` with a runtime endpoint's stored token.
fn endpoint_auth(
    req: &mut ProviderRequest,
    auth_type: AuthType,
    token: Option<&str>,
) -> ApiResult<()> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    match auth_type {
        AuthType::Bearer => req
            .secret_header(AUTHORIZATION, &format!("Bearer {token}"))
            .map_err(|_| bad_header()),
        AuthType::ApiKey => req
            .secret_header(HeaderName::from_static(API_KEY_HEADER), token)
            .map_err(|_| bad_header()),
        AuthType::None => Ok(()),
    }
}

/// Adds the request-scoped payment headers (§2.4).
fn payment_headers(req: &mut ProviderRequest, inputs: &Inputs<'_>) -> ApiResult<()> {
    if let Some(payment) = inputs.payment {
        for (name, value) in payment.headers() {
            req.secret_header(HeaderName::from_static(name), value)
                .map_err(|_| bad_header())?;
        }
    }
    Ok(())
}

/// A runtime endpoint call: `qvac` as an OpenAI chat completion, other providers as
/// `POST {endpointBaseUrl}{path or "/"}` with `input` as the body.
pub fn runtime(
    service: &Service,
    endpoint: &EndpointRow,
    token: Option<&str>,
    inputs: &Inputs<'_>,
) -> ApiResult<ProviderRequest> {
    let (path, body) = if service.provider_key == "qvac" {
        let mut body: Map<String, Value> = Map::new();
        for (key, value) in inputs.input {
            if matches!(key.as_str(), "model" | "messages" | "prompt") {
                continue;
            }
            let name = OPENAI_SNAKE
                .iter()
                .find(|(camel, _)| camel == key)
                .map_or(key.as_str(), |(_, snake)| snake);
            body.insert(name.to_string(), value.clone());
        }
        let model = inputs
            .input
            .get("model")
            .cloned()
            .or_else(|| endpoint.model_alias.clone().map(Value::String));
        if let Some(model) = model {
            body.insert("model".into(), model);
        }
        let messages = match (inputs.input.get("messages"), inputs.input.get("prompt")) {
            (Some(messages), _) => messages.clone(),
            (None, Some(prompt)) => json!([{"role": "user", "content": prompt}]),
            (None, None) => {
                return Err(invalid_request(
                    "input.prompt",
                    "input.prompt (or input.messages) is required",
                ));
            }
        };
        body.insert("messages".into(), messages);
        ("/v1/chat/completions".to_string(), Value::Object(body))
    } else {
        let path = service
            .endpoints
            .iter()
            .find(|e| e.operation.as_deref() == Some(inputs.operation))
            .or_else(|| service.endpoints.first())
            .and_then(|e| e.path.clone())
            .unwrap_or_else(|| "/".to_string());
        (path, Value::Object(inputs.input.clone()))
    };
    let url = parse_url(&format!("{}{}", endpoint.endpoint_base_url, path))?;
    let mut req = request(Method::POST, url, Some(body));
    endpoint_auth(&mut req, endpoint.auth_type, token)?;
    payment_headers(&mut req, inputs)?;
    Ok(req)
}

/// `{name}` placeholders of a template, in order.
fn placeholders(template: &str) -> Vec<(usize, usize, &str)> {
    let mut found = Vec::new();
    let mut rest = 0;
    while let Some(open) = template[rest..].find('{') {
        let start = rest + open;
        let Some(close) = template[start..].find('}') else {
            break;
        };
        let end = start + close;
        let name = &template[start + 1..end];
        if !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            found.push((start, end + 1, name));
        }
        rest = end + 1;
    }
    found
}

/// An input value as text: strings as they are, numbers and booleans written out.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Percent-encodes one path segment or query value (everything but the unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Fills the template: a credential value is inserted as it is (it is usually a base URL); an
/// `input` value is percent-encoded as one path segment (or query value) and then left out of
/// the body or query. Credentials win, so an input cannot redirect a call that carries stored
/// credentials.
fn fill(
    template: &str,
    input: &Map<String, Value>,
    credentials: Option<&Map<String, Value>>,
    used: &mut Vec<String>,
) -> ApiResult<String> {
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for (start, end, name) in placeholders(template) {
        out.push_str(&template[last..start]);
        if let Some(value) = credentials.and_then(|c| c.get(name)).and_then(text_of) {
            out.push_str(value.trim_end_matches('/'));
        } else if let Some(value) = input.get(name).and_then(text_of) {
            out.push_str(&encode(&value));
            used.push(name.to_string());
        } else {
            let field = format!("input.{name}");
            return Err(invalid_request(
                &field,
                format!("{field} is required: the provider URL needs it"),
            ));
        }
        last = end;
    }
    out.push_str(&template[last..]);
    Ok(out)
}

/// The credential → header mapping: `apiKey` → `x-api-key`, `token` → `Authorization: Bearer`
/// (§6.2), plus any `metadata.credentialHeaders` entry of the catalogue service
/// (`{credentialKey, header, valuePrefix?}`) for providers that name their own header.
fn credential_headers(
    req: &mut ProviderRequest,
    service: &Service,
    credentials: &Map<String, Value>,
    payment_authorization: bool,
) -> ApiResult<()> {
    let mut mapping: Vec<(String, String, String)> = vec![
        ("apiKey".into(), API_KEY_HEADER.into(), String::new()),
        ("token".into(), "authorization".into(), "Bearer ".into()),
    ];
    if let Some(Value::Array(extra)) = service.metadata.get().get("credentialHeaders") {
        for entry in extra {
            let field = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_string);
            if let (Some(key), Some(header)) = (field("credentialKey"), field("header")) {
                mapping.push((
                    key,
                    header.to_ascii_lowercase(),
                    field("valuePrefix").unwrap_or_default(),
                ));
            }
        }
    }
    for (key, header, prefix) in mapping {
        let Some(value) = credentials.get(&key).and_then(Value::as_str) else {
            continue;
        };
        // A request-scoped payment's Authorization wins over a credential's (§2.4).
        if header == "authorization" && payment_authorization {
            continue;
        }
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| bad_header())?;
        req.secret_header(name, &format!("{prefix}{value}"))
            .map_err(|_| bad_header())?;
    }
    Ok(())
}

/// A provider HTTP call: the endpoint's method (default `POST`), `url` + `path` with
/// placeholders filled, the rest of `input` as the query (`GET`) or the JSON body.
pub fn http(
    service: &Service,
    endpoint: &ServiceEndpoint,
    inputs: &Inputs<'_>,
) -> ApiResult<ProviderRequest> {
    let method = match endpoint.method.as_deref() {
        None => Method::POST,
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
            ApiError::new(
                crate::error::ErrorCode::EXECUTION_UNSUPPORTED,
                "The provider endpoint's method is not valid",
            )
            .with_reason("invalid-provider-method")
        })?,
    };
    let template = format!(
        "{}{}",
        endpoint.url.as_deref().unwrap_or_default(),
        endpoint.path.as_deref().unwrap_or_default()
    );
    let mut used = Vec::new();
    let filled = fill(&template, inputs.input, inputs.credentials, &mut used)?;
    let mut url = parse_url(&filled)?;
    let rest: Map<String, Value> = inputs
        .input
        .iter()
        .filter(|(key, _)| !used.contains(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let body = if method == Method::GET || method == Method::DELETE || method == Method::HEAD {
        if !rest.is_empty() {
            let mut query = url.query_pairs_mut();
            for (key, value) in &rest {
                match value {
                    Value::Array(items) => {
                        for item in items {
                            if let Some(text) = text_of(item) {
                                query.append_pair(key, &text);
                            }
                        }
                    }
                    Value::Null => {}
                    Value::Object(_) => {
                        query.append_pair(key, &value.to_string());
                    }
                    other => {
                        query.append_pair(key, &text_of(other).unwrap_or_default());
                    }
                }
            }
        }
        None
    } else {
        Some(Value::Object(rest))
    };
    let mut req = request(method, url, body);
    let payment_authorization = inputs.payment.is_some_and(|p| {
        p.authorization
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty())
    });
    if let Some(credentials) = inputs.credentials {
        credential_headers(&mut req, service, credentials, payment_authorization)?;
    }
    payment_headers(&mut req, inputs)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PaymentHeaders;

    fn service(value: Value) -> Service {
        let mut base = json!({
            "id": "svc", "skillKey": "skill", "providerKey": "walrus", "providerId": "p",
            "providerLabel": "P", "serviceType": "storage.object", "name": "n", "description": "d",
            "operations": ["read-blob"], "authType": "none", "accessMode": "public",
            "executionMode": "native", "integrationStatus": "native", "distribution": "openapi",
            "maturity": "beta", "kind": "reference", "region": "global", "requiresHumanEnablement": false,
        });
        base.as_object_mut()
            .unwrap()
            .extend(value.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn endpoint(value: Value) -> ServiceEndpoint {
        serde_json::from_value(value).unwrap()
    }

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn inputs<'a>(
        input: &'a Map<String, Value>,
        credentials: Option<&'a Map<String, Value>>,
        payment: Option<&'a PaymentHeaders>,
    ) -> Inputs<'a> {
        Inputs {
            operation: "read-blob",
            input,
            credentials,
            payment,
        }
    }

    #[test]
    fn placeholders_fill_from_credentials_then_input() {
        let svc = service(json!({}));
        let ep = endpoint(
            json!({"url": "{aggregatorUrl}", "path": "/v1/blobs/{blobId}", "method": "GET"}),
        );
        let input = map(json!({"blobId": "a b/c?", "extra": 7, "tags": ["x", "y"]}));
        let creds = map(json!({"aggregatorUrl": "http://127.0.0.1:9001/"}));
        let req = http(&svc, &ep, &inputs(&input, Some(&creds), None)).unwrap();
        assert_eq!(req.method, Method::GET);
        assert_eq!(
            req.url.as_str(),
            "http://127.0.0.1:9001/v1/blobs/a%20b%2Fc%3F?extra=7&tags=x&tags=y"
        );
        assert!(req.body.is_none(), "GET input goes in the query");

        // The input cannot take over a placeholder a credential fills.
        let hostile = map(json!({"aggregatorUrl": "http://evil.example", "blobId": "b"}));
        let req = http(&svc, &ep, &inputs(&hostile, Some(&creds), None)).unwrap();
        assert!(
            req.url
                .as_str()
                .starts_with("http://127.0.0.1:9001/v1/blobs/b"),
            "{}",
            req.url
        );

        let err = http(&svc, &ep, &inputs(&map(json!({})), Some(&creds), None)).unwrap_err();
        assert_eq!(err.details["field"], "input.blobId");
        let err = http(&svc, &ep, &inputs(&map(json!({"blobId": "b"})), None, None)).unwrap_err();
        assert_eq!(err.details["field"], "input.aggregatorUrl");
    }

    #[test]
    fn post_input_is_the_body_and_credentials_become_headers() {
        let svc = service(json!({"metadata": {"credentialHeaders": [
            {"credentialKey": "publisherToken", "header": "Authorization", "valuePrefix": "Bearer "}]}}));
        let ep = endpoint(json!({"url": "https://api.example.com", "path": "/v1/{kind}"}));
        let input = map(json!({"kind": "blob", "payload": {"a": 1}}));
        let creds = map(json!({"apiKey": "k-123", "publisherToken": "jwt-9"}));
        let req = http(&svc, &ep, &inputs(&input, Some(&creds), None)).unwrap();
        assert_eq!(req.method, Method::POST, "POST is the default");
        assert_eq!(req.url.as_str(), "https://api.example.com/v1/blob");
        assert_eq!(req.body, Some(json!({"payload": {"a": 1}})));
        assert_eq!(req.headers["x-api-key"], "k-123");
        assert_eq!(req.headers["authorization"], "Bearer jwt-9");
        assert!(req.headers["x-api-key"].is_sensitive());

        let token = map(json!({"token": "t-1"}));
        let req = http(&svc, &ep, &inputs(&input, Some(&token), None)).unwrap();
        assert_eq!(req.headers["authorization"], "Bearer t-1");
    }

    #[test]
    fn payment_headers_are_added_and_the_payment_authorization_wins() {
        let svc = service(json!({}));
        let ep = endpoint(json!({"url": "https://pay.example.com/x"}));
        let input = map(json!({"kind": "k"}));
        let creds = map(json!({"token": "t-1", "apiKey": "k"}));
        let payment = PaymentHeaders {
            payment_signature: Some("sig==".into()),
            authorization: Some("Payment abc".into()),
            ..PaymentHeaders::default()
        };
        let req = http(&svc, &ep, &inputs(&input, Some(&creds), Some(&payment))).unwrap();
        assert_eq!(req.headers["payment-signature"], "sig==");
        assert_eq!(req.headers["authorization"], "Payment abc");
        assert_eq!(req.headers["x-api-key"], "k", "the API key still goes");
        assert!(
            !format!("{payment:?}").contains("sig=="),
            "Debug hides payment values"
        );
    }

    #[test]
    fn qvac_becomes_an_openai_chat_completion() {
        let svc = service(json!({"providerKey": "qvac", "kind": "runtime"}));
        let ep = EndpointRow {
            id: "rep".into(),
            machine_id: "m".into(),
            provider_key: "qvac".into(),
            source: "agent".into(),
            agent_id: None,
            label: "l".into(),
            endpoint_base_url: "http://127.0.0.1:11434".into(),
            auth_type: AuthType::Bearer,
            sealed_auth_token: None,
            model_alias: Some("my-llm".into()),
            network_scope: crate::config::NetworkScope::Loopback,
            probe_path: "/v1/models".into(),
            status: crate::runtime::model::EndpointStatus::Active,
            lease_expires_at: None,
            last_checked_at: None,
            last_healthy_at: None,
            health_error: None,
            created_at: 0,
            updated_at: 0,
        };
        let input = map(json!({"prompt": "hi", "maxTokens": 5, "temperature": 0.2}));
        let req = runtime(&svc, &ep, Some("rt-secret"), &inputs(&input, None, None)).unwrap();
        assert_eq!(
            req.url.as_str(),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
        assert_eq!(
            req.body,
            Some(
                json!({"model": "my-llm", "messages": [{"role": "user", "content": "hi"}],
                        "max_tokens": 5, "temperature": 0.2})
            )
        );
        assert_eq!(req.headers["authorization"], "Bearer rt-secret");
        let explicit =
            map(json!({"model": "other", "messages": [{"role": "system", "content": "s"}]}));
        let req = runtime(&svc, &ep, None, &inputs(&explicit, None, None)).unwrap();
        assert_eq!(req.body.as_ref().unwrap()["model"], "other");
        assert_eq!(req.body.as_ref().unwrap()["messages"][0]["role"], "system");
        let err = runtime(&svc, &ep, None, &inputs(&map(json!({})), None, None)).unwrap_err();
        assert_eq!(err.details["field"], "input.prompt");
    }
}
