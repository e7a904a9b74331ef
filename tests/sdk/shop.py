"""The SDK suite's order and payment fixtures, shared by catalog/generate.py (the per-run order
catalogue), fake_provider.py (the provider and x402 paywall), evm.py (the Anvil node) and the
checks. Standard library only: generate.py runs with the system python.

The test chain is an Anvil node started by run.sh with chain id 8453 (Base), a chain the CLI's
`--payment-chain` alias table knows (`base`). The test token sits at Base's USDC address with
USDC's EIP-712 domain ("USD Coin", "2"): the `x402` package signs (from 2.20 on) only for
assets on its built-in list, and this is one of them (see run.sh, X402_VERSION).
"""

CHAIN_ID = 8453
CHAIN = f"eip155:{CHAIN_ID}"  # CAIP-2, as catalogue, proofs and x402 challenges name it
TOKEN_ADDRESS = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"  # Base USDC (x402 default asset)
TOKEN_NAME = "USD Coin"  # EIP-712 domain name of Base USDC
TOKEN_VERSION = "2"
TOKEN_SYMBOL = "USDC"
TOKEN_DECIMALS = 6

# Anvil's well-known dev accounts (mnemonic "test test ... junk"): unlocked on the node, hold
# nothing of value anywhere else.
FACILITATOR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # #1: settles x402 authorizations
WALLET_PAYEE = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # #2: wallet-rail seller
X402_PAY_TO = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"  # #3: x402 seller
ESCROW_ADDRESS = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"  # #4: escrow contract stand-in
ESCROW_PAYEE = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"  # #5: escrow-desk seller

# Service ids (catalog/generate.py writes them; the checks order them).
SKILL = "sdk.shop"
PROVIDER = "sdk-shop"
ECHO = "sdk-shop:echo"  # free, native HTTP: POST <provider>/echo/{channel}
FLAKY = "sdk-shop:flaky"  # free, native HTTP: answers 500 (failed orders, retry)
WALLET = "sdk-shop:wallet"  # wallet rail, fixed 0.02 USDC, native HTTP
X402 = "sdk-shop:x402"  # x402 rail, fixed 0.01 USDC, the paywall: GET <provider>/x402/report
ESCROW_DESK = "sdk-shop:escrow-desk"  # onchain-escrow rail, fixed 0.05 USDC, external handoff

WALLET_PRICE = 0.02
WALLET_RAW = 20_000  # WALLET_PRICE in base units
X402_PRICE = 0.01
X402_RAW = 10_000  # the paywall's accepts[0].amount
X402_TIMEOUT_S = 300  # accepts[0].maxTimeoutSeconds
ESCROW_PRICE = 0.05

X402_PATH = "/x402/report"  # the paywall's resource
