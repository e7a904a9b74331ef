-- GET /health: a static request (no per-request Lua), used for the server and for the bare
-- axum ceiling alike.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.method = "GET"
wrk.path = "/health"
