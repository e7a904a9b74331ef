-- POST /api/v1/market/search with a pairing token, the requests rotating over the m search
-- pairings (one per market machine). The body asks for device.control services running `run`
-- in the EU under a 5 USDT budget: every generated service of that type is ranked, 10 quoted.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
dofile(os.getenv("BENCH_LUA_DIR") .. "/market_common.lua")

local body = '{"serviceType":"device.control","operation":"run","region":"eu","maxResults":10,' ..
  '"budget":{"max":5,"currency":"USDT"}}'

function init(args)
  market_init()
end

function request()
  local p = (seq * n_threads + (thread_id - 1)) % market_m + 1
  seq = seq + 1
  return wrk.format("POST", "/api/v1/market/search",
    { ["Content-Type"] = "application/json", ["x-agent-pairing-token"] = tokens[p] }, body)
end
