//! A tiny load client: `--connections` concurrent request loops for `--duration` seconds on a
//! multi-thread tokio runtime of `--threads` workers (like `wrk -t -c -d`), each request a POST
//! made with one shared `reqwest::Client` (the orchestrator's HTTP client, same version and
//! features) whose answer is read in full. Prints the same `BENCH_JSON` line as the bench's wrk
//! scripts (latencies in microseconds).
//!
//!   http_load --url URL [--connections 16] [--threads 2] [--duration 12] \
//!             (--body-file FILE | --rpc-hashes FILE)
//!
//! `--body-file`: every request POSTs that JSON (the task-execute ceiling: the chat completion
//! the engine sends to the fake runtime). `--rpc-hashes`: one transaction hash a line; requests
//! walk them with `eth_getTransactionReceipt` (the payment-proof ceiling) and an answer with a
//! null result or a JSON-RPC error counts as a status error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

struct Args {
    url: String,
    connections: usize,
    threads: usize,
    duration: Duration,
    bodies: Vec<Bytes>,
    rpc: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: http_load --url URL [--connections N] [--threads N] [--duration S] (--body-file F | --rpc-hashes F)"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut url = None;
    let mut connections = 16;
    let mut threads = 2;
    let mut duration = 12.0;
    let mut bodies = Vec::new();
    let mut rpc = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--url" => url = Some(value()),
            "--connections" => connections = value().parse().unwrap_or_else(|_| usage()),
            "--threads" => threads = value().parse().unwrap_or_else(|_| usage()),
            "--duration" => duration = value().parse().unwrap_or_else(|_| usage()),
            "--body-file" => {
                bodies = vec![Bytes::from(std::fs::read(value()).expect("read the body file"))]
            }
            "--rpc-hashes" => {
                rpc = true;
                let text = std::fs::read_to_string(value()).expect("read the hash file");
                bodies = text
                    .lines()
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|h| {
                        Bytes::from(format!(
                            r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getTransactionReceipt","params":["{h}"]}}"#
                        ))
                    })
                    .collect();
            }
            _ => usage(),
        }
    }
    if bodies.is_empty() {
        usage();
    }
    Args {
        url: url.unwrap_or_else(|| usage()),
        connections,
        threads,
        duration: Duration::from_secs_f64(duration),
        bodies,
        rpc,
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    bytes: u64,
    read: u64,
    status: u64,
    timeout: u64,
    connect: u64,
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let a = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(a));
}

async fn run(a: Args) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.connections)
        .build()
        .expect("client");
    let url: reqwest::Url = a.url.parse().expect("--url");
    let bodies = Arc::new(a.bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + a.duration;
    let mut loops = Vec::new();
    for _ in 0..a.connections {
        let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
        let rpc = a.rpc;
        loops.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) % bodies.len();
                let t0 = Instant::now();
                let sent = client
                    .post(url.clone())
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let response = match sent {
                    Ok(r) => r,
                    Err(e) if e.is_timeout() => { t.timeout += 1; continue }
                    Err(e) if e.is_connect() => { t.connect += 1; continue }
                    Err(_) => { t.read += 1; continue }
                };
                let ok_status = response.status().is_success();
                match response.bytes().await {
                    Ok(body) => {
                        t.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        t.bytes += body.len() as u64;
                        let bad_rpc = rpc && {
                            let text = String::from_utf8_lossy(&body);
                            text.contains("\"result\":null") || text.contains("\"error\"")
                        };
                        if !ok_status || bad_rpc {
                            t.status += 1;
                        }
                    }
                    Err(e) if e.is_timeout() => t.timeout += 1,
                    Err(_) => t.read += 1,
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for handle in loops {
        let t = handle.await.expect("a request loop");
        all.latencies_us.extend(t.latencies_us);
        all.bytes += t.bytes;
        all.read += t.read;
        all.status += t.status;
        all.timeout += t.timeout;
        all.connect += t.connect;
    }
    let elapsed = started.elapsed();
    let mut sorted = all.latencies_us;
    sorted.sort_unstable();
    let requests = sorted.len();
    let mean = if requests == 0 {
        0.0
    } else {
        sorted.iter().map(|&v| v as f64).sum::<f64>() / requests as f64
    };
    println!(
        "BENCH_JSON {{\"requests\":{},\"duration_us\":{},\"bytes\":{},\"rps\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"mean_us\":{:.1},\"errors\":{{\"connect\":{},\"read\":{},\"write\":0,\"status\":{},\"timeout\":{}}}}}",
        requests,
        elapsed.as_micros(),
        all.bytes,
        requests as f64 / elapsed.as_secs_f64(),
        percentile(&sorted, 50.0),
        percentile(&sorted, 90.0),
        percentile(&sorted, 99.0),
        percentile(&sorted, 99.9),
        sorted.last().copied().unwrap_or(0),
        mean,
        all.connect,
        all.read,
        all.status,
        all.timeout,
    );
}
