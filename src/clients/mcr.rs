//! peaqOS MCR resolution (spec identity-and-machines.md §2): is a machine identity activated,
//! is it bonded, and which EVM addresses control it.
//!
//! Only activated answers are cached (per canonical DID, for `cache_ttl_ms`), and concurrent
//! look-ups of one DID share one request. The cache only saves round trips: a replica without it
//! answers the same (DESIGN.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::outbound::Guarded;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::identity::refs::{IdentityRef, evm_address, is_canonical_uint256};

/// Per-request timeout of MCR look-ups (spec §2: "Use 10 s").
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What clients see for any MCR failure; the cause goes to the logs only.
const UNAVAILABLE_MESSAGE: &str = "The peaqOS identity service is unavailable; try again shortly";

/// Cache entries are swept of expired ones once the map grows past this (and then past twice
/// the live size), so DIDs looked up once do not accumulate forever.
const PRUNE_MIN_ENTRIES: usize = 4096;

/// An activated machine identity as MCR reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The canonical DID that was resolved.
    pub did: String,
    /// `peaqos.machine_id` as a canonical decimal string.
    pub mcr_machine_id: String,
    /// `peaqos.bond_status == "bonded"`.
    pub bonded: bool,
    /// Lower-case `0x` addresses, de-duplicated keeping the first: the DID's own address (hex
    /// DIDs), then `operator`, `controller`, `owner`. May be empty.
    pub controller_addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McrError {
    /// MCR answered 404, or with another DID than the one asked for.
    #[error("the identity is not activated in peaqOS MCR")]
    NotActivated,
    /// Any other failure. The text is for logs, never for API clients.
    #[error("peaqOS MCR is unavailable: {0}")]
    Unavailable(String),
}

impl From<McrError> for ApiError {
    fn from(err: McrError) -> Self {
        match err {
            McrError::NotActivated => ApiError::new(
                ErrorCode::MACHINE_NOT_ACTIVATED,
                "The machine identity is not activated in peaqOS",
            )
            .with_reason("not-registered"),
            McrError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "peaqOS MCR resolution failed");
                ApiError::new(ErrorCode::PEAQOS_IDENTITY_UNAVAILABLE, UNAVAILABLE_MESSAGE)
            }
        }
    }
}

/// Counters since start-up, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct McrStats {
    /// `resolve` calls answered from the cache.
    pub hits: u64,
    /// `resolve` calls not answered from the cache (they sent a request or joined one in flight).
    pub misses: u64,
    /// HTTP requests sent to MCR.
    pub requests: u64,
}

type Outcome = Result<Arc<Resolution>, McrError>;

/// One request in flight: every caller waiting for that DID holds the same cell.
type Flight = Arc<OnceCell<Outcome>>;

enum Entry {
    Cached {
        resolution: Arc<Resolution>,
        expires_at_ms: i64,
    },
    InFlight(Flight),
}

struct Entries {
    map: HashMap<String, Entry>,
    prune_at: usize,
}

pub struct McrResolver {
    http: Guarded,
    base_url: String,
    cache_ttl_ms: u64,
    clock: Clock,
    timeout: Duration,
    entries: Mutex<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
    requests: AtomicU64,
}

impl McrResolver {
    /// `base_url` is `PEAQOS_MCR_API_URL` (a trailing `/` is ignored); `cache_ttl_ms == 0`
    /// disables the cache (in-flight requests are still shared).
    pub fn new(http: Guarded, base_url: String, cache_ttl_ms: u64, clock: Clock) -> Self {
        McrResolver {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            cache_ttl_ms,
            clock,
            timeout: DEFAULT_TIMEOUT,
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                prune_at: PRUNE_MIN_ENTRIES,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Replaces the per-request timeout ([`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn stats(&self) -> McrStats {
        McrStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// The activated resolution when the cache holds a fresh one; never asks the MCR.
    pub fn cached(&self, identity: &IdentityRef) -> Option<Arc<Resolution>> {
        self.fresh(self.lock_entries().map.get(&identity.to_string()))
    }

    /// The resolution of a cache entry that has not expired (counted as a hit).
    fn fresh(&self, entry: Option<&Entry>) -> Option<Arc<Resolution>> {
        match entry {
            Some(Entry::Cached {
                resolution,
                expires_at_ms,
            }) if self.clock.now_ms() < *expires_at_ms => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(resolution.clone())
            }
            _ => None,
        }
    }

    /// Activated resolution, from cache when fresh.
    pub async fn resolve(&self, identity: &IdentityRef) -> Result<Arc<Resolution>, McrError> {
        let did = identity.to_string();
        let flight = {
            let mut entries = self.lock_entries();
            if let Some(resolution) = self.fresh(entries.map.get(&did)) {
                return Ok(resolution);
            }
            match entries.map.get(&did) {
                Some(Entry::InFlight(flight)) => flight.clone(),
                _ => {
                    let flight = Flight::default();
                    entries
                        .map
                        .insert(did.clone(), Entry::InFlight(flight.clone()));
                    flight
                }
            }
        };
        self.misses.fetch_add(1, Ordering::Relaxed);

        // Whoever leaves the flight first after it ends retires it, even when cancelled.
        let _retire = RetireFlight {
            resolver: self,
            did: &did,
            flight: &flight,
        };
        // If the caller running the request is cancelled, a waiting caller runs it instead.
        let outcome = flight.get_or_init(|| self.fetch(identity, &did)).await;
        outcome.clone()
    }

    fn lock_entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn fetch(&self, identity: &IdentityRef, did: &str) -> Outcome {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let unavailable =
            |what: String| McrError::Unavailable(format!("MCR look-up of {did}: {what}"));
        let url = reqwest::Url::parse(&format!("{}/machine/{did}", self.base_url))
            .map_err(|err| unavailable(format!("bad URL: {err}")))?;
        let response = self
            .http
            .request(reqwest::Method::GET, url)
            .map_err(|refusal| unavailable(refusal.to_string()))?
            .header(ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|err| unavailable(describe(&err)))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(McrError::NotActivated),
            status => return Err(unavailable(format!("status {status}"))),
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| unavailable(describe(&err)))?;
        let parsed: Value = serde_json::from_slice(&body)
            .map_err(|err| unavailable(format!("body is not JSON: {err}")))?;
        let raw_machine_id = serde_json::from_slice::<RawBody>(&body)
            .ok()
            .and_then(|raw| raw.peaqos)
            .and_then(|peaqos| peaqos.machine_id);
        interpret(identity, did, &parsed, raw_machine_id.as_deref()).map(Arc::new)
    }
}

/// Ends a caller's part in a flight: the first to leave after the flight has an outcome turns its
/// map entry into a cache entry (activated, TTL > 0) or removes it, so later callers start afresh
/// and failures are shared only with the flight's own waiters. A flight abandoned by every caller
/// before it finished is removed by the last one to leave.
struct RetireFlight<'a> {
    resolver: &'a McrResolver,
    did: &'a str,
    flight: &'a Flight,
}

impl Drop for RetireFlight<'_> {
    fn drop(&mut self) {
        let resolver = self.resolver;
        let mut entries = resolver.lock_entries();
        let current = matches!(
            entries.map.get(self.did),
            Some(Entry::InFlight(flight)) if Arc::ptr_eq(flight, self.flight)
        );
        if !current {
            return;
        }
        match self.flight.get() {
            Some(Ok(resolution)) if resolver.cache_ttl_ms > 0 => {
                let ttl = i64::try_from(resolver.cache_ttl_ms).unwrap_or(i64::MAX);
                let now = resolver.clock.now_ms();
                entries.map.insert(
                    self.did.to_string(),
                    Entry::Cached {
                        resolution: resolution.clone(),
                        expires_at_ms: now.saturating_add(ttl),
                    },
                );
                if entries.map.len() > entries.prune_at {
                    entries.map.retain(|_, entry| match entry {
                        Entry::Cached { expires_at_ms, .. } => now < *expires_at_ms,
                        Entry::InFlight(_) => true,
                    });
                    entries.prune_at = PRUNE_MIN_ENTRIES.max(entries.map.len() * 2);
                }
            }
            Some(_) => {
                entries.map.remove(self.did);
            }
            // Cancelled before the outcome: only the map and this caller hold the flight, and
            // nobody can pick it up without the lock held here.
            None if Arc::strong_count(self.flight) <= 2 => {
                entries.map.remove(self.did);
            }
            None => {}
        }
    }
}

/// The error and its causes: reqwest's own text omits them (timeouts, refused connections).
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        format!("timed out: {err}")
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Applies the spec §2 response table to a `200` JSON body.
///
/// `machine_id` may be a JSON integer of any size (machine ids are uint256) or a canonical decimal
/// string; `raw_machine_id` is its exact JSON text, since a parsed `Value` would turn integers
/// above 2⁶⁴ into floats.
/// The exact text of `peaqos.machine_id`.
#[derive(serde::Deserialize)]
struct RawBody {
    peaqos: Option<RawPeaqos>,
}

#[derive(serde::Deserialize)]
struct RawPeaqos {
    machine_id: Option<Box<serde_json::value::RawValue>>,
}

fn interpret(
    identity: &IdentityRef,
    did: &str,
    body: &Value,
    raw_machine_id: Option<&serde_json::value::RawValue>,
) -> Result<Resolution, McrError> {
    let ill_typed =
        |what: &str| McrError::Unavailable(format!("MCR look-up of {did}: {what} in the answer"));
    let peaqos = body
        .get("peaqos")
        .and_then(Value::as_object)
        .ok_or_else(|| ill_typed("no `peaqos` object"))?;
    let answered = peaqos
        .get("did")
        .and_then(Value::as_str)
        .ok_or_else(|| ill_typed("no string `peaqos.did`"))?;
    let same_did = match identity {
        IdentityRef::Address(hex) => answered
            .strip_prefix("did:peaq:0x")
            .is_some_and(|answered| answered.eq_ignore_ascii_case(hex)),
        IdentityRef::Decimal(_) => answered == did,
    };
    if !same_did {
        return Err(McrError::NotActivated);
    }
    let mcr_machine_id = match (
        peaqos.get("machine_id"),
        raw_machine_id.map(|raw| raw.get()),
    ) {
        (Some(Value::Number(_)), Some(text)) if is_canonical_uint256(text) => text.to_string(),
        (Some(Value::String(s)), _) if is_canonical_uint256(s) => s.clone(),
        _ => return Err(ill_typed("no non-negative integer `peaqos.machine_id`")),
    };
    let bonded = peaqos.get("bond_status").and_then(Value::as_str) == Some("bonded");

    let mut controller_addresses: Vec<String> = Vec::new();
    let candidates = [
        identity.address(),
        text_field(peaqos, "operator").and_then(|s| evm_address(s).or_else(|| did_address(s))),
        text_field(peaqos, "controller").and_then(evm_address),
        text_field(peaqos, "owner").and_then(evm_address),
    ];
    for address in candidates.into_iter().flatten() {
        if !controller_addresses.contains(&address) {
            controller_addresses.push(address);
        }
    }

    Ok(Resolution {
        did: did.to_string(),
        mcr_machine_id,
        bonded,
        controller_addresses,
    })
}

fn text_field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

/// The address inside a `did:peaq:0x…` DID.
fn did_address(s: &str) -> Option<String> {
    match IdentityRef::parse(s)? {
        address @ IdentityRef::Address(_) => address.address(),
        IdentityRef::Decimal(_) => None,
    }
}
