-- wrk: POST a form to a token endpoint with HTTP Basic client authentication.
--   BASIC  base64 of "client_id:client_secret"
--   FORM   the form body, e.g. "grant_type=client_credentials"
--   RECORD (optional) file to append each response's refresh_token to
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
wrk.body = os.getenv("FORM")

local record = os.getenv("RECORD")
local out = record and io.open(record, "a")

function response(status, headers, body)
  if out and status == 200 then
    local rt = body:match('"refresh_token":"([^"]+)"')
    if rt then out:write(rt, "\n") end
  end
end

function done(summary, latency, requests)
  if out then out:close() end
end
