-- wrk script: reservations by many different shoppers (for the in-stock path). The requests are
-- formatted once at start-up and then sent round-robin, so that wrk spends no more per request
-- than with a static request. Environment: FS_LAUNCH, FS_SKU, FS_KEY, FS_SHOPPERS (default
-- 50000).
local launch, sku, key = os.getenv("FS_LAUNCH"), os.getenv("FS_SKU"), os.getenv("FS_KEY")
local n = tonumber(os.getenv("FS_SHOPPERS") or "50000")
local reqs, i = {}, 0

function setup(thread)
  thread:set("tid", tostring(thread))
end

function init(args)
  local path = "/v1/launches/" .. launch .. "/reservations"
  local headers = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
  local salt = tostring(math.random(1, 1e9)) .. "-" .. tostring(tid or "")
  for k = 1, n do
    local body = string.format('{"sku":"%s","user_id":"s%s-%d"}', sku, salt, k)
    reqs[k] = wrk.format("POST", path, headers, body)
  end
end

function request()
  i = i % n + 1
  return reqs[i]
end
