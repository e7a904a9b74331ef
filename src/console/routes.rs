//! Serves the embedded console assets, each with the console's security headers and an ETag.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

use crate::App;
use crate::config::Config;
use crate::error::ApiError;

static ASSETS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/console");

/// Scripts, styles and images from this origin only, API calls to this origin only, no inline
/// script or style, no framing, no form posts, and DOM writes only through lit-html's Trusted
/// Types policy (the one library that builds HTML).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types lit-html";

const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
];

/// The console's routes, or none when `PEAQOS_CONSOLE_ENABLED=false`.
pub fn routes(config: &Config) -> Router<Arc<App>> {
    if !config.console_enabled {
        return Router::new();
    }
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{*path}", get(asset))
        .layer(axum::middleware::map_response(with_security_headers))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let (Some(file), Some(etag)) = (ASSETS.get_file(path), etags().get(path)) else {
        return ApiError::not_found("console-asset", path).into_response();
    };
    let etag = HeaderValue::from_str(etag).expect("an ETag is a quoted hex digest");
    // The assets change only with the binary; browsers revalidate and get 304 until then.
    let cache = HeaderValue::from_static("no-cache");
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.as_bytes() == etag.as_bytes());
    if fresh {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        file.contents(),
    )
        .into_response()
}

/// Each asset's strong ETag, computed once from its bytes.
fn etags() -> &'static HashMap<String, String> {
    static ETAGS: OnceLock<HashMap<String, String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        let mut tags = HashMap::new();
        let mut dirs = vec![&ASSETS];
        while let Some(dir) = dirs.pop() {
            for file in dir.files() {
                let digest = Sha256::digest(file.contents());
                let path = file.path().to_string_lossy().into_owned();
                tags.insert(path, format!("\"{}\"", hex::encode(&digest[..16])));
            }
            dirs.extend(dir.dirs());
        }
        tags
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_an_etag_and_a_known_type() {
        let tags = etags();
        assert!(tags.contains_key("index.html"), "{tags:?}");
        for path in tags.keys() {
            assert_ne!(
                content_type(path),
                "application/octet-stream",
                "{path} needs a content type"
            );
        }
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_other_origin() {
        for forbidden in ["'unsafe-inline'", "'unsafe-eval'", "http:", "https:", "*"] {
            assert!(
                !CONTENT_SECURITY_POLICY.contains(forbidden),
                "{forbidden} in {CONTENT_SECURITY_POLICY}"
            );
        }
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn index_loads_only_embedded_assets() {
        let index = ASSETS
            .get_file("index.html")
            .and_then(|f| f.contents_utf8())
            .expect("console/index.html is embedded");
        assert!(!index.contains("<script>"), "no inline script");
        assert!(!index.contains("style="), "no inline style");
        for reference in index.split("=\"/console/").skip(1) {
            let path = reference.split('"').next().unwrap();
            assert!(ASSETS.get_file(path).is_some(), "{path} is not embedded");
        }
    }
}
