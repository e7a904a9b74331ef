//! Background work (spec agents-and-runtime.md §6): the lease sweeper, the runtime-endpoint
//! prober and the interrupted-execution sweep of orders (orders-and-payments.md §1.1), run by
//! one replica at a time, the holder of the database lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde_json::json;

use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::clients::runtime::{ProbeOutcome, ProbeTarget, probe};
use crate::runtime::model::{EndpointRow, EndpointStatus};
use crate::runtime::store as endpoints;
use crate::store::{leader, new_id};

const LEASE_MS: i64 = 30_000;
const RENEW_EVERY: Duration = Duration::from_secs(10);
const SWEEP_EVERY: Duration = Duration::from_secs(15);
const TICK: Duration = Duration::from_millis(250);
const PROBE_CONCURRENCY: usize = 16;

/// This replica's view of background work, for readiness and metrics.
pub struct WorkerState {
    pub holder: String,
    pub leading: AtomicBool,
    pub sweeps: AtomicU64,
    pub probe_rounds: AtomicU64,
}

impl Default for WorkerState {
    fn default() -> Self {
        WorkerState {
            holder: new_id("wrk_"),
            leading: AtomicBool::new(false),
            sweeps: AtomicU64::new(0),
            probe_rounds: AtomicU64::new(0),
        }
    }
}

/// Runs until the task is dropped; gives the lease up through [`release`] on shutdown.
pub async fn run(app: Arc<App>) {
    let state = &app.worker;
    let probe_every = Duration::from_millis(app.config.runtime_probe_interval_ms);
    let (mut last_renew, mut last_sweep, mut last_probe): (
        Option<Instant>,
        Option<Instant>,
        Option<Instant>,
    ) = (None, None, None);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let due =
            |last: Option<Instant>, every: Duration| last.is_none_or(|t| t.elapsed() >= every);
        if (due(last_renew, RENEW_EVERY) || !state.leading.load(Ordering::Relaxed))
            && renew(&app).await
        {
            last_renew = Some(Instant::now());
        }
        if !state.leading.load(Ordering::Relaxed) {
            continue;
        }
        if due(last_sweep, SWEEP_EVERY) {
            if let Err(err) = sweep(&app).await {
                tracing::warn!(error = %err, "lease sweep failed");
            }
            match crate::orders::service::sweep_interrupted(&app).await {
                Ok(0) => {}
                Ok(closed) => {
                    tracing::warn!(closed, "failed orders whose execution was interrupted")
                }
                Err(err) => tracing::warn!(error = %err, "interrupted-execution sweep failed"),
            }
            last_sweep = Some(Instant::now());
        }
        if !probe_every.is_zero() && due(last_probe, probe_every) {
            probe_all(&app).await;
            last_probe = Some(Instant::now());
        }
    }
}

/// Takes or renews the background lease; `true` while this replica holds it.
pub async fn renew(app: &App) -> bool {
    let state = &app.worker;
    let leading = match leader::try_acquire(&app.store, &state.holder, app.clock.now_ms(), LEASE_MS)
        .await
    {
        Ok(leading) => leading,
        Err(err) => {
            tracing::warn!(error = %err, "background lease renewal failed; pausing background work");
            false
        }
    };
    if leading != state.leading.swap(leading, Ordering::Relaxed) {
        tracing::info!(holder = %state.holder, leading, "background runner lease changed");
    }
    leading
}

pub async fn release(app: &App) {
    if app.worker.leading.swap(false, Ordering::Relaxed)
        && let Err(err) = leader::release(&app.store, &app.worker.holder).await
    {
        tracing::warn!(error = %err, "could not release the background lease");
    }
}

fn status_event(endpoint_id: &str, machine_id: &str, payload: serde_json::Value) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor::System,
        event_type: "runtime-endpoint.upserted",
        resource_type: "runtime-endpoint",
        resource_id: endpoint_id.to_string(),
        machine_id: Some(machine_id.to_string()),
        payload,
    }
}

/// Persists `unreachable` for every passed lease.
pub async fn sweep(app: &App) -> Result<usize, sqlx::Error> {
    let now = app.clock.now_ms();
    let mut tx = app.store.begin().await?;
    let changed = endpoints::sweep_expired(&mut tx, now).await?;
    for (id, machine_id, provider_key, status_from) in &changed {
        let payload = json!({
            "providerKey": provider_key, "statusFrom": status_from, "statusTo": "unreachable", "reason": "lease-expired",
        });
        audit::record(&mut tx, now, status_event(id, machine_id, payload)).await?;
    }
    tx.commit().await?;
    app.worker.sweeps.fetch_add(1, Ordering::Relaxed);
    Ok(changed.len())
}

/// Probes every live endpoint (at most 16 at once) and records the results.
pub async fn probe_all(app: &App) {
    let candidates = match endpoints::probe_candidates(&app.store, app.clock.now_ms()).await {
        Ok(candidates) => candidates,
        Err(err) => {
            tracing::warn!(error = %err, "listing endpoints to probe failed");
            return;
        }
    };
    stream::iter(candidates)
        .for_each_concurrent(PROBE_CONCURRENCY, |endpoint| async move {
            let outcome = probe_one(app, &endpoint).await;
            if let Err(err) = record(app, &endpoint, outcome).await {
                tracing::warn!(error = %err, endpoint = %endpoint.id, "recording a probe result failed");
            }
        })
        .await;
    app.worker.probe_rounds.fetch_add(1, Ordering::Relaxed);
}

async fn probe_one(app: &App, endpoint: &EndpointRow) -> ProbeOutcome {
    let token = match endpoint
        .sealed_auth_token
        .as_deref()
        .map(|sealed| app.secrets.open(sealed))
    {
        None => None,
        Some(Ok(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Some(Err(_)) => {
            return ProbeOutcome::Unreachable("stored auth token cannot be decrypted".into());
        }
    };
    let target = ProbeTarget {
        base_url: &endpoint.endpoint_base_url,
        probe_path: &endpoint.probe_path,
        auth_type: endpoint.auth_type,
        auth_token: token.as_deref(),
        network_scope: endpoint.network_scope,
    };
    probe(&app.outbound, &target).await
}

async fn record(
    app: &App,
    endpoint: &EndpointRow,
    outcome: ProbeOutcome,
) -> Result<(), sqlx::Error> {
    let (status, error, healthy) = match &outcome {
        ProbeOutcome::Healthy => (EndpointStatus::Active, None, true),
        ProbeOutcome::Degraded(error) => (EndpointStatus::Degraded, Some(error.as_str()), false),
        ProbeOutcome::Unreachable(error) => {
            (EndpointStatus::Unreachable, Some(error.as_str()), false)
        }
    };
    let now = app.clock.now_ms();
    let mut tx = app.store.begin().await?;
    if let Some(status_from) =
        endpoints::record_probe(&mut tx, &endpoint.id, status, error, healthy, now).await?
    {
        let payload = json!({
            "providerKey": endpoint.provider_key, "statusFrom": status_from, "statusTo": status.as_str(),
            "reason": error.unwrap_or("probe-healthy"),
        });
        audit::record(
            &mut tx,
            now,
            status_event(&endpoint.id, &endpoint.machine_id, payload),
        )
        .await?;
    }
    tx.commit().await
}
