//! The one place that mounts every feature's routes, each group behind the auth it needs (spec
//! README §3.10), inside the shared HTTP conventions (`http::conventions`).

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::get;

use crate::App;
use crate::http::{auth, idempotency};
use crate::pairings::auth as pairing_auth;

pub fn router(app: Arc<App>) -> Router {
    // The API key (when enabled). Idempotency runs after auth: its scope includes the principal.
    let platform = Router::new()
        .merge(crate::audit::routes())
        .merge(crate::identity::routes())
        .merge(crate::machines::routes())
        .merge(crate::pairings::routes())
        .merge(crate::agents::routes())
        .merge(crate::runtime::routes())
        .merge(crate::catalog::routes())
        .merge(crate::policies::routes())
        .merge(crate::graph::routes())
        .merge(crate::tasks::routes())
        .merge(crate::market::platform_routes())
        .merge(crate::orders::platform_routes())
        .route_layer(from_fn_with_state(app.clone(), idempotency::middleware))
        .route_layer(from_fn_with_state(app.clone(), auth::require_api_key));

    // A pairing token (or, with PEAQOS_REQUIRE_AGENT_PAIRING_AUTH=false, the API key).
    let agent = Router::new()
        .merge(crate::market::agent_routes())
        .merge(crate::orders::agent_routes())
        .route_layer(from_fn_with_state(app.clone(), idempotency::middleware))
        .route_layer(from_fn_with_state(
            app.clone(),
            pairing_auth::require_pairing_token,
        ));

    // The API key, or a pairing token that scopes the view.
    let agent_optional = Router::new()
        .merge(crate::catalog::agent_optional_routes())
        .merge(crate::orders::agent_optional_routes())
        .route_layer(from_fn_with_state(
            app.clone(),
            pairing_auth::optional_pairing_token,
        ));

    // The heartbeat is authenticated by the machine-agent token, not the API key. It takes no
    // Idempotency-Key: a heartbeat is itself a renewal, and its principal is only known once the
    // token has been checked.
    let api = Router::new()
        .merge(crate::health::api_routes())
        .route("/openapi.json", get(crate::openapi::serve))
        .merge(crate::agents::heartbeat_routes())
        .merge(platform)
        .merge(agent)
        .merge(agent_optional);

    // `/metrics` moves to its own listener when PEAQOS_METRICS_ADDR is set. On the main port it
    // needs the API key like any platform route.
    let metrics = match app.config.metrics_addr {
        Some(_) => Router::new(),
        None => Router::new()
            .route("/metrics", get(crate::metrics::serve))
            .route_layer(from_fn_with_state(app.clone(), auth::require_api_key)),
    };

    let routes = Router::new()
        .merge(metrics)
        .merge(crate::console::routes(&app.config))
        .nest("/api/v1", api);
    crate::http::conventions(routes, app.clone())
        .merge(crate::http::liveness(crate::health::liveness_routes(), app))
}

/// The router of the dedicated metrics listener (`PEAQOS_METRICS_ADDR`).
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(crate::metrics::serve))
        .fallback(crate::http::envelope::not_found)
        .layer(axum::middleware::from_fn(
            crate::http::envelope::ensure_json_errors,
        ))
        .with_state(app)
}
