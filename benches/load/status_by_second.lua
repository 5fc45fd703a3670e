-- wrk: count responses by status for every second of the run, to see what a failure in the
-- middle of a run (Redis killed) does to each second. Run with one thread.
--   METHOD, BODY, BASIC (optional): the request; default GET without a body.
counts = {}
local method = os.getenv("METHOD") or "GET"
local body = os.getenv("BODY")
local headers = {}
if body then headers["Content-Type"] = "application/x-www-form-urlencoded" end
if os.getenv("BASIC") then headers["Authorization"] = "Basic " .. os.getenv("BASIC") end
if os.getenv("BEARER") then headers["Authorization"] = "Bearer " .. os.getenv("BEARER") end

function request()
  return wrk.format(method, nil, headers, body)
end

function response(status, hdrs, b)
  local key = os.time() .. ":" .. status
  counts[key] = (counts[key] or 0) + 1
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do io.write(string.format("bucket %s %d\n", k, v)) end
  end
end
