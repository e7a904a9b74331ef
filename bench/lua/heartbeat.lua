-- POST /api/v1/machine-agents/heartbeat, each request a different seeded agent (the threads
-- interleave over all agents, so no two in-flight requests share one), token in the body, one
-- qvac endpoint, leaseSeconds 120.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local headers = { ["Content-Type"] = "application/json" }

function init(args)
  bench_init()
end

function request()
  local p = pad18(next_index())
  local token = "mat_bench" .. string.format("%034d", tonumber(p))
  local body = '{"machineId":"mach_01JBENCH' .. p .. '","agentId":"mag_01JBENCH' .. p ..
    '","agentToken":"' .. token .. '","leaseSeconds":120,' ..
    '"endpoints":[{"providerKey":"qvac","endpointBaseUrl":"http://127.0.0.1:9"}]}'
  return wrk.format("POST", "/api/v1/machine-agents/heartbeat", headers, body)
end
