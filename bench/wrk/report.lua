-- Shared by the wrk scripts: at the end of a run, writes one JSON object with the
-- throughput and latency percentiles to the file named by BENCH_OUT.

function done(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
   out:write(string.format(
      '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,' ..
      '"mean_ms":%.3f,"max_ms":%.3f,"errors":%d,"non_2xx":%d}\n',
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      latency.mean / 1000, latency.max / 1000,
      e.connect + e.read + e.write + e.timeout, e.status))
   out:close()
end
