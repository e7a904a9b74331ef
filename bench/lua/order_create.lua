-- POST /api/v1/market/orders for the 0.01 USDT bench service, with the pairing's token.
-- BENCH_ORDER_PAIRINGS = how many pairings the requests rotate over: m (16, each client's
-- request on another pairing: the spread case) or 1 (every request on pairing 1: the
-- serialised case, where each order waits for the pairing's lock).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
dofile(os.getenv("BENCH_LUA_DIR") .. "/market_common.lua")

function init(args)
  market_init()
  order_pairings = tonumber(os.getenv("BENCH_ORDER_PAIRINGS") or "16")
end

function request()
  local p = (seq * n_threads + (thread_id - 1)) % order_pairings + 1
  seq = seq + 1
  local body = '{"machineId":"mach_01JBMRKT' .. pad18(p) .. '","agentPairingId":"apr_01JBMRKT' ..
    pad18(p) .. '","serviceId":"bench-order-svc","input":{"prompt":"Summarise the last maintenance log."}}'
  return wrk.format("POST", "/api/v1/market/orders",
    { ["Content-Type"] = "application/json", ["x-agent-pairing-token"] = tokens[p] }, body)
end
