//! The MCR resolver (spec identity-and-machines.md §2) against a fake MCR API on loopback.

#[path = "common/fake_mcr.rs"]
mod fake_mcr;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_mcr::{Behaviour, FakeMcr, machine_body};
use peaqos_orchestrator::clients::mcr::{McrError, McrResolver, McrStats, Resolution};
use peaqos_orchestrator::clock::Clock;
use peaqos_orchestrator::error::{ApiError, ErrorCode};
use peaqos_orchestrator::identity::refs::IdentityRef;
use serde_json::{Value, json};

const TTL_MS: u64 = 30_000;
const HEX_DID: &str = "did:peaq:0xAbCdEf0123456789abcdef0123456789ABCDEF01";
const HEX_DID_ADDRESS: &str = "0xabcdef0123456789abcdef0123456789abcdef01";
const ADDR_A: &str = "0xA1B2C3D4E5F60718293a4b5c6d7e8f9012345678";
const ADDR_A_LOWER: &str = "0xa1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const ADDR_B: &str = "0x00000000000000000000000000000000000000bB";
const ADDR_B_LOWER: &str = "0x00000000000000000000000000000000000000bb";
const ADDR_C: &str = "0xC0FFEE0000000000000000000000000000C0FFEE";
const ADDR_C_LOWER: &str = "0xc0ffee0000000000000000000000000000c0ffee";
const SOLANA_KEY: &str = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU";

fn trusted() -> peaqos_orchestrator::clients::outbound::Guarded {
    use peaqos_orchestrator::clients::outbound::{Guarded, ScopePolicy};
    Guarded::new(ScopePolicy::trusted()).unwrap()
}

fn id(s: &str) -> IdentityRef {
    IdentityRef::parse(s).unwrap()
}

fn resolver(fake: &FakeMcr, ttl_ms: u64) -> (McrResolver, Clock) {
    let clock = Clock::default();
    let resolver = McrResolver::new(trusted(), fake.url.clone(), ttl_ms, clock.clone());
    (resolver, clock)
}

fn peaqos(fields: Value) -> Behaviour {
    Behaviour::Machine(json!({ "peaqos": fields }))
}

async fn resolve_with(
    fake: &FakeMcr,
    did: &str,
    behaviour: Behaviour,
) -> Result<Arc<Resolution>, McrError> {
    fake.set(did, behaviour);
    let (resolver, _) = resolver(fake, TTL_MS);
    resolver.resolve(&id(did)).await
}

fn assert_unavailable(outcome: Result<Arc<Resolution>, McrError>, case: &str) {
    assert!(
        matches!(outcome, Err(McrError::Unavailable(_))),
        "{case}: {outcome:?}"
    );
}

#[tokio::test]
async fn activated_decimal_did() {
    let fake = FakeMcr::start().await;
    fake.register("did:peaq:42", 42, ADDR_A, true);
    // A trailing `/` on the base URL is ignored.
    let resolver = McrResolver::new(
        trusted(),
        format!("{}/", fake.url),
        TTL_MS,
        Clock::default(),
    );

    let resolution = resolver.resolve(&id("did:peaq:42")).await.unwrap();
    assert_eq!(
        *resolution,
        Resolution {
            did: "did:peaq:42".into(),
            mcr_machine_id: "42".into(),
            bonded: true,
            controller_addresses: vec![ADDR_A_LOWER.into()],
        }
    );
    assert_eq!(fake.requests("did:peaq:42"), 1);
    assert_eq!(fake.last_accept().as_deref(), Some("application/json"));

    // The alias form resolves the canonical DID.
    let alias = resolver.resolve(&id("peaqos:machine:42")).await.unwrap();
    assert_eq!(alias.did, "did:peaq:42");
}

#[tokio::test]
async fn activated_hex_did_orders_and_dedupes_controllers() {
    let fake = FakeMcr::start().await;
    // MCR echoes the DID in another case; the operator repeats the DID's own address.
    fake.set(
        HEX_DID,
        peaqos(json!({
            "did": HEX_DID.replace("0xAbCdEf", "0xABCDEF"),
            "machine_id": "7",
            "bond_status": "bonded",
            "operator": HEX_DID_ADDRESS.to_uppercase().replace("0X", "0x"),
            "controller": ADDR_A,
            "owner": ADDR_B,
        })),
    );
    let (resolver, _) = resolver(&fake, TTL_MS);
    let resolution = resolver.resolve(&id(HEX_DID)).await.unwrap();
    assert_eq!(resolution.did, HEX_DID.to_lowercase());
    assert_eq!(resolution.mcr_machine_id, "7");
    assert!(resolution.bonded);
    assert_eq!(
        resolution.controller_addresses,
        [HEX_DID_ADDRESS, ADDR_A_LOWER, ADDR_B_LOWER]
    );

    // Order is operator, controller, owner after the DID's address; later duplicates are dropped.
    let other = "did:peaq:0x2222222222222222222222222222222222222222";
    let other_address = "0x2222222222222222222222222222222222222222";
    fake.set(
        other,
        peaqos(json!({
            "did": other,
            "machine_id": 8,
            "operator": ADDR_C,
            "controller": ADDR_A,
            "owner": ADDR_C_LOWER,
        })),
    );
    let resolution = resolver.resolve(&id(other)).await.unwrap();
    assert_eq!(
        resolution.controller_addresses,
        [other_address, ADDR_C_LOWER, ADDR_A_LOWER]
    );
}

#[tokio::test]
async fn operator_given_as_hex_did() {
    let fake = FakeMcr::start().await;
    let operator_did = format!("did:peaq:{ADDR_A}");
    fake.register("did:peaq:5", 5, &operator_did, false);
    let (resolver, _) = resolver(&fake, TTL_MS);
    let resolution = resolver.resolve(&id("did:peaq:5")).await.unwrap();
    assert_eq!(resolution.controller_addresses, [ADDR_A_LOWER]);
}

#[tokio::test]
async fn non_evm_controller_values_are_skipped() {
    let fake = FakeMcr::start().await;
    let outcome = resolve_with(
        &fake,
        "did:peaq:9",
        peaqos(json!({
            "did": "did:peaq:9",
            "machine_id": 9,
            "operator": SOLANA_KEY,
            "controller": null,
            "owner": 12345,
        })),
    )
    .await
    .unwrap();
    assert!(outcome.controller_addresses.is_empty());

    // Decimal DIDs, short hex, Solana keys and objects are skipped; EVM addresses are kept.
    let outcome = resolve_with(
        &fake,
        "did:peaq:10",
        peaqos(json!({
            "did": "did:peaq:10",
            "machine_id": 10,
            "operator": "did:peaq:77",
            "controller": "0x1234",
            "owner": ADDR_B,
        })),
    )
    .await
    .unwrap();
    assert_eq!(outcome.controller_addresses, [ADDR_B_LOWER]);

    let outcome = resolve_with(
        &fake,
        "did:peaq:11",
        peaqos(json!({
            "did": "did:peaq:11",
            "machine_id": 11,
            "operator": { "address": ADDR_A },
            "controller": SOLANA_KEY,
            "owner": format!("did:peaq:{ADDR_C}"),
        })),
    )
    .await
    .unwrap();
    assert!(outcome.controller_addresses.is_empty(), "{outcome:?}");
}

#[tokio::test]
async fn bonded_only_when_bond_status_is_bonded() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:3";
    for (status, bonded) in [
        (json!("bonded"), true),
        (json!("unbonded"), false),
        (json!("Bonded"), false),
        (json!(true), false),
        (Value::Null, false),
    ] {
        let outcome = resolve_with(
            &fake,
            did,
            peaqos(json!({ "did": did, "machine_id": 3, "bond_status": status })),
        )
        .await
        .unwrap();
        assert_eq!(outcome.bonded, bonded, "bond_status {status}");
    }
    let absent = resolve_with(&fake, did, peaqos(json!({ "did": did, "machine_id": 3 })))
        .await
        .unwrap();
    assert!(!absent.bonded);
}

#[tokio::test]
async fn machine_id_forms() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:1";
    for (machine_id, expected) in [
        (json!(0), "0"),
        (json!(u64::MAX), "18446744073709551615"),
        (json!("0"), "0"),
        (
            json!("123456789012345678901234567890"),
            "123456789012345678901234567890",
        ),
    ] {
        let outcome = resolve_with(
            &fake,
            did,
            peaqos(json!({ "did": did, "machine_id": machine_id })),
        )
        .await
        .unwrap();
        assert_eq!(outcome.mcr_machine_id, expected);
    }
}

#[tokio::test]
async fn not_activated() {
    let fake = FakeMcr::start().await;
    let (resolver, _) = resolver(&fake, TTL_MS);
    assert_eq!(
        resolver.resolve(&id("did:peaq:404")).await,
        Err(McrError::NotActivated)
    );
    assert_eq!(fake.requests("did:peaq:404"), 1);

    for (did, answered) in [
        ("did:peaq:12", "did:peaq:13"),
        ("did:peaq:12", "peaqos:machine:12"),
        ("did:peaq:12", "DID:PEAQ:12"),
        (
            HEX_DID,
            "did:peaq:0x2222222222222222222222222222222222222222",
        ),
        (HEX_DID, "did:peaq:12"),
    ] {
        let outcome = resolve_with(
            &fake,
            did,
            peaqos(json!({ "did": answered, "machine_id": 12, "bond_status": "bonded" })),
        )
        .await;
        assert_eq!(
            outcome,
            Err(McrError::NotActivated),
            "{did} answered as {answered}"
        );
    }
}

#[tokio::test]
async fn failing_statuses_are_unavailable() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:20";
    for status in [500, 502, 503, 429, 418, 400, 401, 403, 410, 201, 204] {
        assert_unavailable(
            resolve_with(&fake, did, Behaviour::Status(status)).await,
            &format!("status {status}"),
        );
    }
}

#[tokio::test]
async fn malformed_answers_are_unavailable() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:21";
    assert_unavailable(
        resolve_with(&fake, did, Behaviour::Malformed).await,
        "non-JSON",
    );

    let bodies = [
        json!([]),
        json!("peaqos"),
        json!({}),
        json!({ "peaqos": null }),
        json!({ "peaqos": "did:peaq:21" }),
        json!({ "peaqos": { "machine_id": 21 } }),
        json!({ "peaqos": { "did": 21, "machine_id": 21 } }),
        json!({ "did": did, "machine_id": 21 }),
        json!({ "peaqos": { "did": did } }),
        json!({ "peaqos": { "did": did, "machine_id": null } }),
        json!({ "peaqos": { "did": did, "machine_id": -1 } }),
        json!({ "peaqos": { "did": did, "machine_id": 1.5 } }),
        json!({ "peaqos": { "did": did, "machine_id": 1e30 } }),
        json!({ "peaqos": { "did": did, "machine_id": "007" } }),
        json!({ "peaqos": { "did": did, "machine_id": "-1" } }),
        json!({ "peaqos": { "did": did, "machine_id": "1e3" } }),
        json!({ "peaqos": { "did": did, "machine_id": "" } }),
        json!({ "peaqos": { "did": did, "machine_id": " 1" } }),
        json!({ "peaqos": { "did": did, "machine_id": true } }),
        json!({ "peaqos": { "did": did, "machine_id": [1] } }),
    ];
    for body in bodies {
        assert_unavailable(
            resolve_with(&fake, did, Behaviour::Machine(body.clone())).await,
            &body.to_string(),
        );
    }
}

#[tokio::test]
async fn integers_beyond_u64_must_come_as_strings() {
    // Documented limit: without serde_json's arbitrary_precision a JSON integer above u64::MAX
    // cannot be read exactly, so it is unavailable rather than guessed.
    let fake = FakeMcr::start().await;
    let did = "did:peaq:22";
    let raw = r#"{"peaqos":{"did":"did:peaq:22","machine_id":18446744073709551616}}"#;
    let body: Value = serde_json::from_str(raw).unwrap();
    assert_unavailable(
        resolve_with(&fake, did, Behaviour::Machine(body)).await,
        raw,
    );
}

#[tokio::test]
async fn slow_answers_time_out() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:30";
    fake.set(
        did,
        Behaviour::Slow(
            Duration::from_secs(5),
            Box::new(Behaviour::Machine(machine_body(did, 30, ADDR_A, true))),
        ),
    );
    let (resolver, _) = resolver(&fake, TTL_MS);
    let resolver = resolver.with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let outcome = resolver.resolve(&id(did)).await;
    let elapsed = started.elapsed();
    assert_unavailable(outcome, "slow");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );

    // Within the timeout the same answer is fine.
    fake.set(
        did,
        Behaviour::Slow(
            Duration::from_millis(50),
            Box::new(Behaviour::Machine(machine_body(did, 30, ADDR_A, true))),
        ),
    );
    assert!(resolver.resolve(&id(did)).await.is_ok());
}

#[tokio::test]
async fn connection_errors_are_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let resolver = McrResolver::new(trusted(), url, TTL_MS, Clock::default());
    assert_unavailable(resolver.resolve(&id("did:peaq:1")).await, "refused");
}

#[tokio::test]
async fn activated_answers_are_cached_until_the_ttl() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:40";
    fake.register(did, 40, ADDR_A, true);
    let (resolver, clock) = resolver(&fake, TTL_MS);

    let first = resolver.resolve(&id(did)).await.unwrap();
    let second = resolver.resolve(&id(did)).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(fake.requests(did), 1);
    assert_eq!(
        resolver.stats(),
        McrStats {
            hits: 1,
            misses: 1,
            requests: 1
        }
    );

    // Still cached just before expiry, even though MCR changed its answer.
    fake.remove(did);
    clock.advance_ms(TTL_MS as i64 - 1_000);
    assert!(resolver.resolve(&id(did)).await.is_ok());
    assert_eq!(fake.requests(did), 1);

    clock.advance_ms(1_000);
    assert_eq!(
        resolver.resolve(&id(did)).await,
        Err(McrError::NotActivated)
    );
    assert_eq!(fake.requests(did), 2);

    // The negative answer was not cached.
    fake.register(did, 40, ADDR_B, false);
    let renewed = resolver.resolve(&id(did)).await.unwrap();
    assert_eq!(renewed.controller_addresses, [ADDR_B_LOWER]);
    assert!(!renewed.bonded);
    assert_eq!(fake.requests(did), 3);
    assert_eq!(
        resolver.stats(),
        McrStats {
            hits: 2,
            misses: 3,
            requests: 3
        }
    );
}

#[tokio::test]
async fn the_cache_alone_answers_cached_and_never_asks() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:41";
    fake.register(did, 41, ADDR_A, true);
    let (resolver, clock) = resolver(&fake, TTL_MS);

    assert_eq!(resolver.cached(&id(did)), None, "nothing cached yet");
    assert_eq!(fake.requests(did), 0, "and nobody asked");
    let resolved = resolver.resolve(&id(did)).await.unwrap();
    let cached = resolver.cached(&id(did)).expect("a fresh entry");
    assert!(Arc::ptr_eq(&resolved, &cached));
    clock.advance_ms(TTL_MS as i64);
    assert_eq!(resolver.cached(&id(did)), None, "expired");
    assert_eq!(fake.requests(did), 1);
    assert_eq!(
        resolver.stats(),
        McrStats {
            hits: 1,
            misses: 1,
            requests: 1
        }
    );
}

#[tokio::test]
async fn zero_ttl_disables_the_cache() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:41";
    fake.register(did, 41, ADDR_A, true);
    let (resolver, _) = resolver(&fake, 0);
    assert!(resolver.resolve(&id(did)).await.is_ok());
    assert!(resolver.resolve(&id(did)).await.is_ok());
    assert_eq!(fake.requests(did), 2);
    assert_eq!(resolver.stats().hits, 0);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:42";
    let (resolver, _) = resolver(&fake, TTL_MS);

    fake.set(did, Behaviour::Status(503));
    assert_unavailable(resolver.resolve(&id(did)).await, "503");
    fake.set(did, Behaviour::Malformed);
    assert_unavailable(resolver.resolve(&id(did)).await, "malformed");
    fake.register(did, 42, ADDR_A, true);
    assert!(resolver.resolve(&id(did)).await.is_ok());
    assert_eq!(fake.requests(did), 3);
}

async fn resolve_concurrently(
    resolver: &Arc<McrResolver>,
    did: &str,
    n: usize,
) -> Vec<Result<Arc<Resolution>, McrError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let resolver = resolver.clone();
            let identity = id(did);
            tokio::spawn(async move { resolver.resolve(&identity).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn slow(behaviour: Behaviour) -> Behaviour {
    Behaviour::Slow(Duration::from_millis(300), Box::new(behaviour))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_lookups_share_one_request() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:50";
    fake.set(
        did,
        slow(Behaviour::Machine(machine_body(did, 50, ADDR_A, true))),
    );
    let (resolver, _) = resolver(&fake, TTL_MS);
    let resolver = Arc::new(resolver);

    let outcomes = resolve_concurrently(&resolver, did, 20).await;
    assert_eq!(fake.requests(did), 1);
    let first = outcomes[0].as_ref().unwrap().clone();
    assert_eq!(first.mcr_machine_id, "50");
    for outcome in &outcomes {
        assert!(Arc::ptr_eq(outcome.as_ref().unwrap(), &first));
    }
    assert_eq!(
        resolver.stats(),
        McrStats {
            hits: 0,
            misses: 20,
            requests: 1
        }
    );

    // The shared answer was cached once the flight ended.
    assert!(resolver.resolve(&id(did)).await.is_ok());
    assert_eq!(fake.requests(did), 1);
    assert_eq!(resolver.stats().hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_failure_reaches_its_waiters_but_is_not_cached() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:51";
    fake.set(did, slow(Behaviour::Status(500)));
    let (resolver, _) = resolver(&fake, TTL_MS);
    let resolver = Arc::new(resolver);

    let outcomes = resolve_concurrently(&resolver, did, 20).await;
    assert_eq!(fake.requests(did), 1);
    for outcome in outcomes {
        assert_unavailable(outcome, "shared 500");
    }

    fake.set(did, slow(Behaviour::Status(404)));
    let outcomes = resolve_concurrently(&resolver, did, 20).await;
    assert_eq!(fake.requests(did), 2);
    assert!(outcomes.iter().all(|o| *o == Err(McrError::NotActivated)));

    fake.register(did, 51, ADDR_A, true);
    assert!(resolver.resolve(&id(did)).await.is_ok());
    assert_eq!(fake.requests(did), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_ttl_still_shares_in_flight_requests() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:52";
    fake.set(
        did,
        slow(Behaviour::Machine(machine_body(did, 52, ADDR_A, true))),
    );
    let (resolver, _) = resolver(&fake, 0);
    let resolver = Arc::new(resolver);

    let outcomes = resolve_concurrently(&resolver, did, 20).await;
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(fake.requests(did), 1);
    assert!(resolver.resolve(&id(did)).await.is_ok());
    assert_eq!(fake.requests(did), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_lookup_does_not_wedge_the_did() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:53";
    fake.set(
        did,
        slow(Behaviour::Machine(machine_body(did, 53, ADDR_A, true))),
    );
    let (resolver, _) = resolver(&fake, TTL_MS);
    let resolver = Arc::new(resolver);

    // The only caller gives up mid-request: the next one starts afresh.
    let leader = {
        let resolver = resolver.clone();
        tokio::spawn(async move { resolver.resolve(&id(did)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    assert!(resolver.resolve(&id(did)).await.is_ok());
    assert_eq!(fake.requests(did), 2);

    // The caller running a shared request gives up: a waiter takes the request over.
    let other = "did:peaq:54";
    fake.set(
        other,
        slow(Behaviour::Machine(machine_body(other, 54, ADDR_A, true))),
    );
    let leader = {
        let resolver = resolver.clone();
        tokio::spawn(async move { resolver.resolve(&id(other)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiter = {
        let resolver = resolver.clone();
        tokio::spawn(async move { resolver.resolve(&id(other)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    assert!(waiter.await.unwrap().is_ok());
    assert_eq!(fake.requests(other), 2);
    assert!(resolver.resolve(&id(other)).await.is_ok());
    assert_eq!(fake.requests(other), 2);
}

#[test]
fn errors_map_to_the_spec_codes() {
    let not_activated = ApiError::from(McrError::NotActivated);
    assert_eq!(not_activated.code, ErrorCode::MACHINE_NOT_ACTIVATED);
    assert_eq!(not_activated.code.status().as_u16(), 403);
    assert_eq!(not_activated.details["reason"], "not-registered");

    let cause = "GET http://10.0.0.7/machine/did:peaq:1: connection refused";
    let unavailable = ApiError::from(McrError::Unavailable(cause.into()));
    assert_eq!(unavailable.code, ErrorCode::PEAQOS_IDENTITY_UNAVAILABLE);
    assert_eq!(unavailable.code.status().as_u16(), 503);
    let body = unavailable.body().to_string();
    assert!(
        !body.contains("10.0.0.7") && !body.contains("refused"),
        "{body}"
    );
}

#[tokio::test]
async fn machine_ids_are_uint256_even_as_json_integers() {
    let fake = FakeMcr::start().await;
    let did = "did:peaq:1";
    let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
    let body = |machine_id: &str| {
        Behaviour::Raw(format!(
            r#"{{"peaqos": {{"did": "{did}", "machine_id": {machine_id}, "bond_status": "bonded"}}}}"#
        ))
    };
    let resolution = resolve_with(&fake, did, body(max)).await.unwrap();
    assert_eq!(resolution.mcr_machine_id, max);
    for bad in [
        "-1",
        "1.5",
        "1e3",
        "007",
        "-115792089237316195423570985008687907853269984665640564039457584007913129639935",
        "115792089237316195423570985008687907853269984665640564039457584007913129639936",
    ] {
        assert_unavailable(resolve_with(&fake, did, body(bad)).await, bad);
    }
}
