-- POST /fhir/Patient with the body in BENCH_BODY_FILE (server-assigned ids).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.path = os.getenv("BENCH_BASE_PATH") .. "/Patient"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Accept"] = "application/fhir+json"
