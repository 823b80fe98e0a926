-- wrk script: the same reservation request every time (for the sold-out path, where who asks
-- does not matter). Environment: FS_LAUNCH, FS_SKU, FS_KEY.
wrk.method = "POST"
wrk.path = "/v1/launches/" .. os.getenv("FS_LAUNCH") .. "/reservations"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("FS_KEY")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sku":"' .. os.getenv("FS_SKU") .. '","user_id":"bench-shopper"}'
