-- POST /api/v1/machines/{m}/tasks/{t}/execute over the pool of resolved tasks (each runs its
-- route once: a qvac chat completion on the machine's runtime endpoint, the fake runtime).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
dofile(os.getenv("BENCH_LUA_DIR") .. "/market_common.lua")

local headers = { ["Content-Type"] = "application/json" }

function init(args)
  market_init()
end

function request()
  local i = next_pool_index()
  if i == nil then
    return wrk.format("POST", "/api/v1/machines/mach_01JBMRKT" .. pad18(1) ..
      "/tasks/tsk_pool_exhausted/execute", headers, "{}")
  end
  local machine = (i - 1) % market_m + 1
  return wrk.format("POST", "/api/v1/machines/mach_01JBMRKT" .. pad18(machine) ..
    "/tasks/tsk_01JBMRKT" .. pad18(i) .. "/execute", headers, "{}")
end
