-- wrk: refresh tokens, each one used once (refresh tokens rotate: a second use would be a
-- reuse). Run with one thread.
--   BASIC   base64 of "client_id:client_secret"
--   TOKENS  file of refresh tokens, one per line
--   ENDPOINT path, e.g. /credential/token
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = "Basic " .. os.getenv("BASIC"),
}

function request()
  i = i + 1
  local t = tokens[i] or tokens[#tokens]
  return wrk.format("POST", os.getenv("ENDPOINT"), headers, "grant_type=refresh_token&refresh_token=" .. t)
end

function done(summary, latency, requests)
  -- More requests than tokens shows up as non-2xx answers (a token used twice).
  io.write(string.format("refresh tokens available: %d\n", #tokens))
end
