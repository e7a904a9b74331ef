-- Shared by the bench wrk scripts (loaded with dofile; BENCH_LUA_DIR is set by run.sh).
-- Each wrk thread has its own Lua state; setup() numbers them so request generators can
-- interleave ids without two threads (or two in-flight requests) using the same one.

local thread_counter = 1

function setup(thread)
  thread:set("thread_id", thread_counter)
  thread_counter = thread_counter + 1
end

function bench_init()
  n_ids = tonumber(os.getenv("BENCH_N") or "10000")
  n_threads = tonumber(os.getenv("BENCH_WRK_THREADS") or "2")
  seq = 0
end

-- 1-based id for the next request: thread t takes t, t+T, t+2T, ... wrapping at n_ids.
function next_index()
  local i = (seq * n_threads + (thread_id - 1)) % n_ids + 1
  seq = seq + 1
  return i
end

function pad18(i)
  return string.format("%018d", i)
end

-- One JSON line on stdout, parsed by run.sh (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.1f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
