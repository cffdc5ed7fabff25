-- bench/auth: a Patient search, chosen by BENCH_SEARCH:
--   family  GET /fhir/Patient?family=<BENCH_FAMILY_PREFIX><ggg>, ggg (three digits) drawn
--           uniformly in [0, BENCH_FAMILY_GROUPS) for every request: each group is the
--           family-name prefix of about ten of the loaded Patients;
--   gender  GET /fhir/Patient?gender=female&_count=20: half of them match, a page of 20.
-- With BENCH_TOKEN set (the server with authorisation on), every request carries
-- "Authorization: Bearer <BENCH_TOKEN>"; without it, none.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local kind = os.getenv("BENCH_SEARCH") or "family"
local base = os.getenv("BENCH_BASE_PATH") .. "/Patient"
local family = base .. "?family=" .. (os.getenv("BENCH_FAMILY_PREFIX") or "Fam")
local groups = tonumber(os.getenv("BENCH_FAMILY_GROUPS") or "200")
wrk.headers["Accept"] = "application/fhir+json"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end

if kind == "gender" then
   wrk.path = base .. "?gender=female&_count=20"
elseif kind ~= "family" then
   error("BENCH_SEARCH must be family or gender, not " .. kind)
end

local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("thread_no", threads)
end

function init(args)
   math.randomseed(os.time() * 1000 + thread_no)
end

if kind == "family" then
   function request()
      return wrk.format("GET", family .. string.format("%03d", math.random(0, groups - 1)))
   end
end
