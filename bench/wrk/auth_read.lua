-- bench/auth: GET /fhir/Patient/bench-<n>, n uniformly random in [0, BENCH_IDS), a fresh
-- draw for every request. With BENCH_TOKEN set (the server with authorisation on), every
-- request carries "Authorization: Bearer <BENCH_TOKEN>"; without it, none.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local ids = tonumber(os.getenv("BENCH_IDS"))
local prefix = os.getenv("BENCH_BASE_PATH") .. "/Patient/bench-"
wrk.headers["Accept"] = "application/fhir+json"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end

local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("thread_no", threads)
end

function init(args)
   math.randomseed(os.time() * 1000 + thread_no)
end

function request()
   return wrk.format("GET", prefix .. math.random(0, ids - 1))
end
