-- wrk script: counts responses per wall-clock second across all threads and prints them at the
-- end ("per-second: N N N ..."), so a reload's throughput dip can be seen.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
end

function response(status, headers, body)
  local t = os.time()
  counts[t] = (counts[t] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for second, n in pairs(thread:get("counts")) do
      total[second] = (total[second] or 0) + n
    end
  end
  local seconds = {}
  for second in pairs(total) do table.insert(seconds, second) end
  table.sort(seconds)
  local line = "per-second:"
  for _, second in ipairs(seconds) do line = line .. " " .. total[second] end
  print(line)
end
