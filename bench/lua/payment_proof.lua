-- POST /api/v1/market/orders/{o}/payment-proof in rpc mode: order n of the pool with the n-th
-- real ERC-20 transfer on Anvil (BENCH_TX_HASHES, one a line), the token of the order's
-- payment pairing (m + ((n - 1) % m) + 1). BENCH_PAYER, BENCH_PAYEE, BENCH_TOKEN_ADDRESS:
-- the transfer's parties and contract.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
dofile(os.getenv("BENCH_LUA_DIR") .. "/market_common.lua")

function init(args)
  market_init()
  hashes = read_lines(os.getenv("BENCH_TX_HASHES"))
  payer = os.getenv("BENCH_PAYER")
  payee = os.getenv("BENCH_PAYEE")
  token_address = os.getenv("BENCH_TOKEN_ADDRESS")
end

function request()
  local i = next_pool_index()
  if i == nil or i > #hashes then
    return wrk.format("POST", "/api/v1/market/orders/ord_pool_exhausted/payment-proof",
      { ["Content-Type"] = "application/json", ["x-agent-pairing-token"] = tokens[market_m + 1] }, "{}")
  end
  local p = market_m + (i - 1) % market_m + 1
  local body = '{"verificationMode":"rpc","chain":"eip155:31337","token":"USDT",' ..
    '"payerAddress":"' .. payer .. '","payeeAddress":"' .. payee .. '","amount":"0.01",' ..
    '"tokenAddress":"' .. token_address .. '","transactionHash":"' .. hashes[i] .. '"}'
  return wrk.format("POST", "/api/v1/market/orders/ord_01JBMRKT" .. pad18(i) .. "/payment-proof",
    { ["Content-Type"] = "application/json", ["x-agent-pairing-token"] = tokens[p] }, body)
end
