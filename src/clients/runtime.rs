//! Runtime endpoints on machines (spec agents-and-runtime.md §3, §6): provider keys, base-URL
//! normalisation, default network scopes and the health prober.
//!
//! The blocked-address rule is enforced twice: at registration on the literal host
//! ([`normalise_base_url`]), and at call time on the address connected to (`clients::outbound`),
//! because DNS can point elsewhere later. Network scopes are enforced at call time only, by the
//! address connected to.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::outbound::{
    AddressKind, Outbound, ResolveError, address_kind, is_blocked_host, literal_ip,
};
use crate::config::NetworkScope;
use crate::error::ApiError;

/// Per-probe timeout (spec §6).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Header carrying the token of `api-key` endpoints (spec §6, **Open**).
pub const API_KEY_HEADER: &str = "x-api-key";

const PROVIDER_KEY_RULE: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";
const VALID_URL: &str = "valid URL";

/// Lower-cased provider key matching `^[a-z0-9][a-z0-9._-]{0,63}$` (after lower-casing), else
/// `VALIDATION_ERROR` naming `field`.
pub fn provider_key(field: &str, input: &str) -> Result<String, ApiError> {
    let key = input.to_lowercase();
    let bytes = key.as_bytes();
    let valid = (1..=64).contains(&bytes.len())
        && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
        && bytes[1..]
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
    if valid {
        Ok(key)
    } else {
        Err(ApiError::validation(
            field,
            PROVIDER_KEY_RULE,
            format!("{field} must match {PROVIDER_KEY_RULE} (after lower-casing)"),
        ))
    }
}

/// §3 normalisation of `endpointBaseUrl` to `scheme://host[:port]`.
///
/// - The input must be an absolute `http`/`https` URL written with `://` and a non-empty
///   authority (so the lenient WHATWG forms `http:host` and `http:///host` are refused), with no
///   user-info (`user:pass@`, or even a bare `@`).
/// - Scheme and host are lower-cased (non-ASCII hosts become punycode, IPv4 literals in any
///   notation become dotted-quad, IPv6 literals are compressed and kept in brackets).
/// - An explicit port is kept, **except the scheme's default port** (`:80` for http, `:443` for
///   https), which is dropped: `http://h:80` and `http://h` are the same endpoint.
/// - Path, query and fragment are dropped.
///
/// Errors: `VALIDATION_ERROR` with `details.field = field` and `details.constraint: "valid URL"`;
/// a literal IP or host in the blocked set additionally carries `reason: "blocked-address"`.
pub fn normalise_base_url(field: &str, input: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::validation(
            field,
            VALID_URL,
            format!("{field} must be an absolute http or https URL with a host and no user-info"),
        )
    };

    let raw = input.trim();
    let (scheme, rest) = raw.split_once("://").ok_or_else(invalid)?;
    let authority_end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid());
    }
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(invalid());
    }

    let url = Url::parse(raw).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid());
    }
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host.to_ascii_lowercase(),
        _ => return Err(invalid()),
    };

    if is_blocked_host(&host) {
        return Err(ApiError::validation(
            field,
            VALID_URL,
            format!("{field} points at a blocked (link-local, metadata or reserved) address"),
        )
        .with_reason("blocked-address"));
    }

    Ok(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// Default scope when none is declared (§3): `localhost`, 127.0.0.0/8 and `::1` are loopback;
/// 10/8, 172.16/12, 192.168/16 and fc00::/7 are LAN; everything else, including every other
/// host name, is public. IPv4-mapped IPv6 literals follow their IPv4 address. A value that does
/// not parse as a URL is public.
pub fn default_network_scope(base_url: &str) -> NetworkScope {
    let Some(host) = Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    else {
        return NetworkScope::Public;
    };
    if host.trim_end_matches('.') == "localhost" {
        return NetworkScope::Loopback;
    }
    match literal_ip(&host).map(address_kind) {
        Some(AddressKind::Loopback) => NetworkScope::Loopback,
        Some(AddressKind::Private) => NetworkScope::Lan,
        Some(AddressKind::Other) | None => NetworkScope::Public,
    }
}

/// How a runtime endpoint authenticates the orchestrator's calls.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AuthType {
    None,
    ApiKey,
    Bearer,
}

impl AuthType {
    /// The wire value: `none`, `api-key` or `bearer`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::None => "none",
            AuthType::ApiKey => "api-key",
            AuthType::Bearer => "bearer",
        }
    }

    /// Parses a wire value; exact match only.
    pub fn parse(value: &str) -> Option<AuthType> {
        match value {
            "none" => Some(AuthType::None),
            "api-key" => Some(AuthType::ApiKey),
            "bearer" => Some(AuthType::Bearer),
            _ => None,
        }
    }
}

/// What the prober needs of one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    /// Normalised `scheme://host[:port]`.
    pub base_url: &'a str,
    /// Starts with `/`.
    pub probe_path: &'a str,
    pub auth_type: AuthType,
    /// The decrypted token; ignored when `auth_type` is `none`.
    pub auth_token: Option<&'a str>,
    pub network_scope: NetworkScope,
}

/// The result of one probe (spec §6 table). The texts become `healthError` and never contain the
/// auth token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// 2xx.
    Healthy,
    /// Any other HTTP status, as `"HTTP <code>"` (3xx included: redirects are not followed).
    Degraded(String),
    /// No HTTP answer: `"timeout"`, `"connection refused"`, `"DNS lookup failed"`,
    /// `"blocked address"`, `"network scope not allowed"`, …
    Unreachable(String),
}

/// §6: `GET {base_url}{probe_path}` with a 5 s timeout. See [`probe_with_timeout`].
pub async fn probe(outbound: &Outbound, target: &ProbeTarget<'_>) -> ProbeOutcome {
    probe_with_timeout(outbound, target, PROBE_TIMEOUT).await
}

/// [`probe`] with its request timeout as a parameter (tests use a short one).
///
/// No request is sent, and no connection made, when the declared scope is not allowed, or the
/// address connected to would be outside it (`"network scope not allowed"`), or the host is
/// blocked by name or by address (`"blocked address"`) — see `clients::outbound`. Redirects are
/// not followed: a 3xx is reported as `Degraded("HTTP 3xx")`.
pub async fn probe_with_timeout(
    outbound: &Outbound,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> ProbeOutcome {
    let Some(guarded) = outbound.endpoint(target.network_scope) else {
        return ProbeOutcome::Unreachable(SCOPE_NOT_ALLOWED.into());
    };
    let url = match Url::parse(&format!("{}{}", target.base_url, target.probe_path)) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => url,
        _ => return ProbeOutcome::Unreachable("invalid URL".into()),
    };
    let request = match guarded.request(Method::GET, url) {
        Ok(request) => request,
        Err(refusal) => return ProbeOutcome::Unreachable(refusal_text(&refusal).into()),
    };

    let token = target.auth_token.filter(|t| !t.is_empty());
    let auth_header: Option<(HeaderName, String)> = match (target.auth_type, token) {
        (AuthType::Bearer, Some(token)) => Some((AUTHORIZATION, format!("Bearer {token}"))),
        (AuthType::ApiKey, Some(token)) => {
            Some((HeaderName::from_static(API_KEY_HEADER), token.to_owned()))
        }
        // No token stored: probe unauthenticated; the endpoint's 401 says the rest.
        _ => None,
    };

    let mut request = request.timeout(timeout);
    if let Some((name, value)) = auth_header {
        let Ok(mut value) = HeaderValue::from_str(&value) else {
            return ProbeOutcome::Unreachable("invalid auth token".into());
        };
        value.set_sensitive(true);
        request = request.header(name, value);
    }

    match request.send().await {
        Ok(response) if response.status().is_success() => ProbeOutcome::Healthy,
        Ok(response) => ProbeOutcome::Degraded(format!("HTTP {}", response.status().as_u16())),
        Err(err) => ProbeOutcome::Unreachable(redact(&describe_error(&err), token)),
    }
}

/// The `healthError` of a call refused before any connection.
pub const SCOPE_NOT_ALLOWED: &str = "network scope not allowed";

fn refusal_text(refusal: &ResolveError) -> &'static str {
    if refusal.is_blocked() {
        "blocked address"
    } else if refusal.is_scope_refusal() {
        SCOPE_NOT_ALLOWED
    } else {
        "DNS lookup failed"
    }
}

/// Longest cause text kept in a `healthError`.
const MAX_CAUSE_CHARS: usize = 160;

/// A short `healthError` for a failed call: fixed texts for the cases the prober knows, else
/// `"connection failed: <innermost cause>"` (the URL is never part of it).
fn describe_error(err: &reqwest::Error) -> String {
    let mut innermost: Option<String> = None;
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<ResolveError>() {
            return refusal_text(refusal).into();
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    return "connection reset".into();
                }
                std::io::ErrorKind::TimedOut => return "timeout".into(),
                _ => {}
            }
        }
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    if err.is_timeout() {
        return "timeout".into();
    }
    if err.is_dns() {
        return "DNS lookup failed".into();
    }
    let kind = if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match innermost {
        Some(cause) => {
            let cause: String = cause.chars().take(MAX_CAUSE_CHARS).collect();
            format!("{kind}: {cause}")
        }
        None => kind.into(),
    }
}

/// Belt and braces: the token is never sent anywhere an error could echo it, but a `healthError`
/// is stored and returned, so any occurrence is masked all the same.
fn redact(text: &str, token: Option<&str>) -> String {
    match token {
        Some(token) if text.contains(token) => text.replace(token, "[redacted]"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn assert_invalid_url(input: &str) {
        let err = normalise_base_url("endpointBaseUrl", input)
            .expect_err(&format!("{input:?} must be refused"));
        assert_eq!(err.code, ErrorCode::VALIDATION_ERROR, "{input:?}");
        assert_eq!(err.details["field"], "endpointBaseUrl", "{input:?}");
        assert_eq!(err.details["constraint"], "valid URL", "{input:?}");
        assert!(err.details.get("reason").is_none(), "{input:?}");
    }

    fn assert_blocked_url(input: &str) {
        let err = normalise_base_url("endpointBaseUrl", input)
            .expect_err(&format!("{input:?} must be refused"));
        assert_eq!(err.code, ErrorCode::VALIDATION_ERROR, "{input:?}");
        assert_eq!(err.details["field"], "endpointBaseUrl", "{input:?}");
        assert_eq!(err.details["constraint"], "valid URL", "{input:?}");
        assert_eq!(err.details["reason"], "blocked-address", "{input:?}");
    }

    #[test]
    fn provider_keys_are_lower_cased_and_checked() {
        assert_eq!(provider_key("providerKey", "QVAC").unwrap(), "qvac");
        assert_eq!(provider_key("providerKey", "a").unwrap(), "a");
        assert_eq!(
            provider_key("providerKey", "0pen-AI_v1.2").unwrap(),
            "0pen-ai_v1.2"
        );
        let longest = format!("a{}", "b".repeat(63));
        assert_eq!(provider_key("providerKey", &longest).unwrap(), longest);

        for bad in [
            "",
            "-qvac",
            ".qvac",
            "_qvac",
            "qv ac",
            "qvac/x",
            "qvac:1",
            "qväc",
            " qvac",
            &format!("a{}", "b".repeat(64)),
        ] {
            let err = provider_key("providerKey", bad).expect_err(bad);
            assert_eq!(err.code, ErrorCode::VALIDATION_ERROR, "{bad:?}");
            assert_eq!(err.details["field"], "providerKey", "{bad:?}");
        }
    }

    #[test]
    fn base_urls_are_normalised() {
        for (input, expected) in [
            ("http://example.com", "http://example.com"),
            ("https://example.com/", "https://example.com"),
            (
                "HTTP://Example.COM:8080/v1/models?x=1#frag",
                "http://example.com:8080",
            ),
            ("https://api.example.com/a/b/c?q", "https://api.example.com"),
            ("http://[::1]:8080/x", "http://[::1]:8080"),
            ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]"),
            ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
            ("http://localhost:3000/health", "http://localhost:3000"),
            ("  https://example.com:8443  ", "https://example.com:8443"),
            // Default ports are dropped; non-default ones are kept.
            ("http://example.com:80/", "http://example.com"),
            ("https://example.com:443", "https://example.com"),
            ("http://example.com:443", "http://example.com:443"),
            ("https://example.com:80", "https://example.com:80"),
            ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
        ] {
            assert_eq!(
                normalise_base_url("endpointBaseUrl", input).unwrap(),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for input in [
            "",
            "example.com",
            "/v1/models",
            "ftp://example.com",
            "file:///etc/passwd",
            "ws://example.com",
            "http://",
            "http:///x",
            "http://:8080",
            "http:example.com",
            "http://user:pass@example.com",
            "http://user@example.com",
            "http://@example.com",
            "http://exa mple.com",
            "http://example.com:99999",
            "mailto:a@example.com",
        ] {
            assert_invalid_url(input);
        }
    }

    #[test]
    fn blocked_hosts_are_refused_at_registration() {
        for input in [
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.1.1:8080",
            "http://[fe80::1]:8080",
            "http://[fd00:ec2::254]",
            "http://0.0.0.0:8080",
            "http://0.1.2.3",
            "http://[::]:80",
            "http://[::ffff:169.254.169.254]",
            "http://100.100.100.200",
            "http://255.255.255.255",
            "http://224.0.0.1",
            "http://[ff02::1]",
            "http://metadata.google.internal/computeMetadata/v1",
            "http://METADATA.Google.Internal.:80",
            // Other IPv4 notations the URL parser normalises.
            "http://0xa9fea9fe",
            "http://2852039166",
        ] {
            assert_blocked_url(input);
        }
    }

    #[test]
    fn default_scope_follows_the_host() {
        use NetworkScope::*;
        for (url, scope) in [
            ("http://localhost:3000", Loopback),
            ("http://LOCALHOST", Loopback),
            ("http://127.0.0.1", Loopback),
            ("http://127.255.0.9:80", Loopback),
            ("http://[::1]:8080", Loopback),
            ("http://[::ffff:127.0.0.1]", Loopback),
            ("http://10.1.2.3", Lan),
            ("http://172.16.0.1", Lan),
            ("http://172.31.255.255", Lan),
            ("http://192.168.1.10:11434", Lan),
            ("http://[fc00::1]", Lan),
            ("http://[fd12:3456::1]", Lan),
            ("http://[::ffff:10.0.0.1]", Lan),
            ("http://172.15.0.1", Public),
            ("http://172.32.0.1", Public),
            ("http://192.169.0.1", Public),
            ("http://8.8.8.8", Public),
            ("http://[2001:db8::1]", Public),
            ("http://[fe00::1]", Public),
            ("https://api.example.com", Public),
            ("http://my-box.local", Public),
            ("http://localhost.example.com", Public),
            ("not a url", Public),
        ] {
            assert_eq!(default_network_scope(url), scope, "{url}");
        }
    }

    #[test]
    fn auth_types_round_trip() {
        for auth in [AuthType::None, AuthType::ApiKey, AuthType::Bearer] {
            assert_eq!(AuthType::parse(auth.as_str()), Some(auth));
            let json = serde_json::to_value(auth).unwrap();
            assert_eq!(json, auth.as_str());
            assert_eq!(serde_json::from_value::<AuthType>(json).unwrap(), auth);
        }
        assert_eq!(AuthType::ApiKey.as_str(), "api-key");
        assert_eq!(AuthType::parse("apiKey"), None);
        assert_eq!(AuthType::parse("Bearer"), None);
    }

    #[test]
    fn network_scopes_round_trip() {
        for scope in [
            NetworkScope::Public,
            NetworkScope::Vpn,
            NetworkScope::Lan,
            NetworkScope::Loopback,
        ] {
            assert_eq!(NetworkScope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(NetworkScope::Loopback.as_str(), "loopback");
        assert_eq!(NetworkScope::parse("LAN"), None);
    }

    #[test]
    fn redaction_masks_the_token() {
        assert_eq!(
            redact("oops s3cret here", Some("s3cret")),
            "oops [redacted] here"
        );
        assert_eq!(redact("timeout", Some("s3cret")), "timeout");
        assert_eq!(redact("timeout", None), "timeout");
    }
}
