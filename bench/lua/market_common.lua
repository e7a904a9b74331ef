-- Shared by the market wrk scripts (after common.lua). run.sh sets BENCH_TOKENS (the pairing
-- tokens, one a line: pairing p on line p), BENCH_MARKET_M (market machines = search/order
-- pairings), and for the consumable pools BENCH_START (entries used by earlier runs) and
-- BENCH_POOL (pool size).

function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  return lines
end

function market_init()
  bench_init()
  tokens = read_lines(os.getenv("BENCH_TOKENS"))
  market_m = tonumber(os.getenv("BENCH_MARKET_M") or "16")
  pool_start = tonumber(os.getenv("BENCH_START") or "0")
  pool_size = tonumber(os.getenv("BENCH_POOL") or "0")
end

-- 1-based pool entry of the next request: thread t takes start+t, start+t+T, ... Never wraps:
-- past the pool's end it answers nil and the caller sends a request that fails (404), so an
-- exhausted pool shows as errors instead of as repeated work.
function next_pool_index()
  local i = pool_start + seq * n_threads + thread_id
  seq = seq + 1
  if i > pool_size then return nil end
  return i
end

function pad18(i)
  return string.format("%018d", i)
end
