-- GET /api/v1/machines/{id}, walking the seeded ids mach_01JBENCH<000…n>.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  bench_init()
end

function request()
  return wrk.format("GET", "/api/v1/machines/mach_01JBENCH" .. pad18(next_index()))
end
