//! Prometheus metrics (`GET /metrics`, or on `PEAQOS_METRICS_ADDR`): requests by route template
//! and status, database pool use, MCR cache, heartbeats and background runs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::App;

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often recorded histogram samples are folded into their buckets. The recorder keeps every
/// sample until then, so without this upkeep a server nobody scrapes grows by about 16 bytes a
/// request, without bound.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

static UPKEEPS: AtomicU64 = AtomicU64::new(0);

/// The process-wide recorder (the `metrics` facade has one global recorder), with its upkeep
/// thread (a thread, not a task: the recorder outlives any one runtime).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("static buckets are valid")
            .install_recorder()
            .expect("the Prometheus recorder is the only global recorder");
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                    UPKEEPS.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("the metrics upkeep thread starts");
        handle
    })
}

/// How many upkeeps have run since the recorder was installed.
pub fn upkeeps() -> u64 {
    UPKEEPS.load(Ordering::Relaxed)
}

/// Makes sure the recorder exists before the first request is counted.
pub fn init() {
    handle();
}

/// The request counter and latency histogram of one (method, route, status).
#[derive(Clone)]
struct RequestMetrics {
    method: axum::http::Method,
    status: u16,
    total: metrics::Counter,
    duration: metrics::Histogram,
}

thread_local! {
    /// Handles by route template: registering a labelled metric allocates and hashes its labels,
    /// so each thread keeps the handles of the first request of each kind (the set is small and
    /// bounded: route templates × methods × statuses).
    static REQUEST_METRICS: std::cell::RefCell<std::collections::HashMap<Box<str>, Vec<RequestMetrics>>> =
        Default::default();
}

/// One served request, labelled by route template (never the raw path).
pub fn record_request(
    method: &axum::http::Method,
    route: &str,
    status: StatusCode,
    elapsed: Duration,
) {
    let status = status.as_u16();
    let found = REQUEST_METRICS.with_borrow(|handles| {
        handles
            .get(route)
            .and_then(|kinds| {
                kinds
                    .iter()
                    .find(|k| k.status == status && k.method == method)
            })
            .cloned()
    });
    let metrics = found.unwrap_or_else(|| {
        let labels = [
            ("method", method.to_string()),
            ("route", route.to_string()),
            ("status", status.to_string()),
        ];
        let kind = RequestMetrics {
            method: method.clone(),
            status,
            total: metrics::counter!("http_requests_total", &labels),
            duration: metrics::histogram!("http_request_duration_seconds", &labels),
        };
        REQUEST_METRICS
            .with_borrow_mut(|handles| handles.entry(route.into()).or_default().push(kind.clone()));
        kind
    });
    metrics.total.increment(1);
    metrics.duration.record(elapsed.as_secs_f64());
}

/// A heartbeat outcome: `accepted`, or `rejected` with the error code.
pub fn record_heartbeat(result: Result<(), &str>) {
    match result {
        Ok(()) => metrics::counter!("heartbeats_total", "result" => "accepted").increment(1),
        Err(code) => metrics::counter!("heartbeats_total", "result" => "rejected", "code" => code.to_string()).increment(1),
    }
}

/// Prometheus text exposition of this process.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub(crate) async fn serve(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<App>>,
) -> Response {
    render(&app)
}

/// Renders the text exposition, after reading the values that live elsewhere.
pub fn render(app: &App) -> Response {
    let (size, idle, max) = app.store.pool_status();
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set(size.saturating_sub(idle) as f64);
    metrics::gauge!("db_pool_max_connections").set(max as f64);

    let mcr = app.mcr.stats();
    metrics::counter!("mcr_cache_hits_total").absolute(mcr.hits);
    metrics::counter!("mcr_cache_misses_total").absolute(mcr.misses);
    metrics::counter!("mcr_requests_total").absolute(mcr.requests);

    use Ordering::Relaxed;
    metrics::counter!("background_runs_total", "job" => "lease-sweep")
        .absolute(app.worker.sweeps.load(Relaxed));
    metrics::counter!("background_runs_total", "job" => "probe-round")
        .absolute(app.worker.probe_rounds.load(Relaxed));
    metrics::gauge!("background_leader").set(if app.worker.leading.load(Relaxed) {
        1.0
    } else {
        0.0
    });

    let handle = handle();
    handle.run_upkeep();
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}
