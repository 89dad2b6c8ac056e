-- wrk script: counts responses per wall-clock second across all threads and prints them at the
-- end ("per-second: N N N ..."), so a reload's throughput dip can be seen. Answers whose body
-- names a code version ("version": "vN") are also counted by version ("versions: v1=N v2=M"),
-- so a reload's switch to new code can be seen in the same run.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  versions = {}
end

function response(status, headers, body)
  local t = os.time()
  counts[t] = (counts[t] or 0) + 1
  local v = body and string.match(body, '"version":%s*"([^"]+)"')
  if v then versions[v] = (versions[v] or 0) + 1 end
end

-- sum(NAME): the threads' tables NAME added up.
local function sum(name)
  local total = {}
  for _, thread in ipairs(threads) do
    for k, n in pairs(thread:get(name)) do
      total[k] = (total[k] or 0) + n
    end
  end
  local keys = {}
  for k in pairs(total) do table.insert(keys, k) end
  table.sort(keys)
  return total, keys
end

function done(summary, latency, requests)
  local total, seconds = sum("counts")
  local line = "per-second:"
  for _, second in ipairs(seconds) do line = line .. " " .. total[second] end
  print(line)
  local by_version, names = sum("versions")
  if #names > 0 then
    line = "versions:"
    for _, v in ipairs(names) do line = line .. " " .. v .. "=" .. by_version[v] end
    print(line)
  end
end
