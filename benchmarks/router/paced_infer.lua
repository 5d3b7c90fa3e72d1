-- wrk script: post_infer.lua's request and summary, each connection waiting BENCH_DELAY_MS
-- before each request. With C connections and a delay of C * 1000 / R ms the rate stays a
-- little under R requests per second (each connection also waits for its answer): the
-- Debian wrk has no fixed-rate mode (wrk2's -R).
dofile(os.getenv("BENCH_POST_SCRIPT"))
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS"))

delay = function()
  return delay_ms
end
