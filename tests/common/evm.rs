//! A real local EVM for payment tests: an Anvil node (npm `@foundry-rs/anvil`, pinned in
//! `tests/evm/package-lock.json`) and a real ERC-20 with EIP-3009,
//! `tests/evm/contracts/TestToken.sol`, compiled by the pinned solc-js.
//!
//! Nothing needs installing by hand beyond `node`/`npm`: the first [`Anvil::start`] in a test
//! process runs `tests/evm/install.sh` (an `npm ci` on first use, then a no-op) for the binary,
//! and the first [`Anvil::deploy_token`] compiles the contract with `tests/evm/compile.js`. The
//! compiled JSON is cached as `target/test-evm/TestToken-<hash>.json`, keyed by the hash of the
//! source, `compile.js` and the lock file, so later runs skip the compiler.
//!
//! ```ignore
//! let mut node = Anvil::start().await;                       // chain id 3338, automine on
//! let token = node.deploy_token().await;                      // "Test USDT" v1, USDT, 6 decimals
//! let payer = dev_account(1);
//! token.mint(&payer.address, units("10", 6)).await;
//! let hash = token.transfer(&payer.address, PAYEE, units("2.5", 6)).await;   // mined, status 1
//! let bad = token.reverting_transfer(&payer.address, PAYEE, units("99", 6)).await; // status 0
//! node.set_automine(false).await;
//! let pending = token.submit_transfer(&payer.address, PAYEE, units("1", 6)).await; // no receipt
//! node.mine(3).await;                                          // mined, and 2 blocks on top
//! node.stop().await;                                           // the node is gone: RPC fails
//! node.restart().await;                                        // back, same port, same chain
//! ```
//!
//! * **Node.** [`Anvil::start_with`] takes an [`AnvilOptions`] (chain id, `--no-mining`). Each
//!   node listens on its own free loopback port (`--port 0`; the port is read from Anvil's
//!   `Listening on` line) and is killed when its [`Anvil`] is dropped. [`Anvil::stop`] kills it
//!   earlier, to test a node that went away (it saves the chain with `anvil_dumpState` first),
//!   and [`Anvil::restart`] brings it back on the same port with that chain, to test a retry.
//!   [`Anvil::set_automine`] and [`Anvil::mine`] (`evm_setAutomine`, `evm_mine`) hold and mine
//!   blocks; [`Anvil::rpc`] is raw JSON-RPC, [`Rpc::receipt`] a transaction's receipt.
//! * **Accounts.** Anvil's ten unlocked dev accounts ([`dev_account`], with the well-known
//!   private keys of the `test … junk` mnemonic, not secrets). Transactions go through
//!   `eth_sendTransaction` from an unlocked account, so the node signs them.
//! * **Token.** [`TestToken`] ([`TokenSpec`]: EIP-712 name and version, symbol, decimals):
//!   `mint` (anyone may), `transfer` (waits for a successful receipt), `submit_transfer`
//!   (returns at once: pending while automine is off), `reverting_transfer` (more than the
//!   balance, with a fixed gas limit, so it is mined with status 0), `balance_of`. The helpers
//!   that wait for a receipt mine one block themselves while automine is off; only
//!   `submit_transfer` leaves a transaction pending. Amounts are base units ([`units`]).
//! * **x402 / EIP-3009.** [`TestToken::domain`] is the token's EIP-712 domain (the `extra.name`
//!   and `extra.version` of an x402 `accepts` entry are [`TokenSpec::name`] and
//!   [`TokenSpec::version`]); [`Authorization::sign`] signs a `TransferWithAuthorization` with a
//!   dev key (r ‖ s ‖ v, v = 27/28: what an x402 `PAYMENT-SIGNATURE` carries);
//!   [`TestToken::transfer_with_authorization`] settles it on chain the way a facilitator does.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{Eip712Domain, SolCall, SolStruct, SolValue, sol};
use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The chain id [`Anvil::start`] uses: peaq's, so `eip155:3338` proofs name this node.
pub const DEFAULT_CHAIN_ID: u64 = 3338;

/// The gas limit of [`TestToken::reverting_transfer`]: fixed, so the node does not estimate
/// (an estimate of a reverting call fails) and mines the transaction as sent.
const REVERTING_GAS: u64 = 100_000;

/// How long a submitted transaction may take to be mined with automine on.
const MINE_WAIT: Duration = Duration::from_secs(10);

sol! {
    function mint(address to, uint256 value);
    function transfer(address to, uint256 value) returns (bool);
    function balanceOf(address owner) returns (uint256);
    function authorizationState(address authorizer, bytes32 nonce) returns (bool);
    function DOMAIN_SEPARATOR() returns (bytes32);
    function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter,
        uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s);
    function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter,
        uint256 validBefore, bytes32 nonce, bytes signature);

    /// EIP-3009's signed message.
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts

/// Private keys of Anvil's dev accounts (mnemonic `test test … test junk`, m/44'/60'/0'/0/i).
const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// One of Anvil's unlocked dev accounts.
#[derive(Clone)]
pub struct DevAccount {
    /// Lower-case `0x` + 40 hex.
    pub address: String,
    /// `0x` + 64 hex.
    pub private_key: &'static str,
}

impl std::fmt::Debug for DevAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevAccount")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl DevAccount {
    pub fn signing_key(&self) -> SigningKey {
        let bytes = hex::decode(&self.private_key[2..]).unwrap();
        SigningKey::from_slice(&bytes).unwrap()
    }
}

/// Dev account `index` (0..10). Account 0 deploys; the tests use the others as payers.
pub fn dev_account(index: usize) -> DevAccount {
    let private_key = DEV_KEYS[index];
    let bytes = hex::decode(&private_key[2..]).unwrap();
    let key = SigningKey::from_slice(&bytes).unwrap();
    DevAccount {
        address: peaqos_orchestrator::crypto::eip191::address_of(key.verifying_key()),
        private_key,
    }
}

/// `amount` (a plain decimal such as `"2.5"`) in base units of a token with `decimals`.
pub fn units(amount: &str, decimals: u32) -> U256 {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    assert!(
        fraction.len() <= decimals as usize,
        "{amount} has too many decimals"
    );
    let digits = format!("{whole}{fraction:0<width$}", width = decimals as usize);
    U256::from_str_radix(&digits, 10).unwrap()
}

fn address(text: &str) -> Address {
    text.parse()
        .unwrap_or_else(|e| panic!("not an address {text}: {e}"))
}

fn hex_of(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn quantity(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a quantity: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The toolchain: install once, compile once

fn evm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/evm")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The Anvil binary, installed by `tests/evm/install.sh` on first use.
pub fn anvil_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let output = Command::new("bash")
            .arg(evm_dir().join("install.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs tests/evm/install.sh");
        assert!(
            output.status.success(),
            "tests/evm/install.sh failed (it needs node, npm and the npm registry)"
        );
        let path = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
        assert!(path.is_file(), "install.sh printed {path:?}, not a file");
        path
    })
}

/// A compiled contract.
#[derive(Debug)]
pub struct Artifact {
    pub abi: Value,
    /// `0x` + hex.
    pub bytecode: String,
}

/// `TestToken`, compiled (or read from the cache under `target/test-evm/`).
pub fn test_token_artifact() -> &'static Artifact {
    static ARTIFACT: OnceLock<Artifact> = OnceLock::new();
    ARTIFACT.get_or_init(|| {
        anvil_binary(); // the same install brings solc-js
        let dir = evm_dir();
        let source = dir.join("contracts/TestToken.sol");
        let mut hash = Sha256::new();
        for file in [
            &source,
            &dir.join("compile.js"),
            &dir.join("package-lock.json"),
        ] {
            hash.update(std::fs::read(file).unwrap());
        }
        let key = hex::encode(&hash.finalize()[..8]);
        let out = target_dir().join(format!("test-evm/TestToken-{key}.json"));
        if !out.is_file() {
            let status = Command::new("node")
                .arg(dir.join("compile.js"))
                .arg(&source)
                .arg("TestToken")
                .arg(&out)
                .status()
                .expect("node runs tests/evm/compile.js");
            assert!(status.success(), "compiling TestToken.sol failed");
        }
        let compiled: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        Artifact {
            abi: compiled["abi"].clone(),
            bytecode: compiled["bytecode"].as_str().unwrap().to_string(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC

/// A JSON-RPC client of one node.
#[derive(Clone, Debug)]
pub struct Rpc {
    pub url: String,
    http: reqwest::Client,
    /// Whether the node mines each transaction as it arrives (shared by every clone).
    automine: Arc<AtomicBool>,
}

impl Rpc {
    fn new(url: String, automine: bool) -> Rpc {
        Rpc {
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            automine: Arc::new(AtomicBool::new(automine)),
        }
    }

    /// `method(params)`: the `result`, or the JSON-RPC error (or transport failure) as text.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let answer: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{method}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        if let Some(error) = answer.get("error") {
            return Err(format!("{method}: {error}"));
        }
        Ok(answer["result"].clone())
    }

    /// [`Rpc::call`] that must succeed.
    pub async fn must(&self, method: &str, params: Value) -> Value {
        self.call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `eth_sendTransaction` from an unlocked dev account: the transaction hash.
    pub async fn send(
        &self,
        from: &str,
        to: Option<&str>,
        data: &[u8],
        gas: Option<u64>,
    ) -> String {
        let mut tx = json!({"from": from, "data": hex_of(data)});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        if let Some(gas) = gas {
            tx["gas"] = json!(format!("{gas:#x}"));
        }
        let hash = self.must("eth_sendTransaction", json!([tx])).await;
        hash.as_str().unwrap().to_ascii_lowercase()
    }

    /// The receipt of `hash`, `None` while it is not mined.
    pub async fn receipt(&self, hash: &str) -> Option<Value> {
        let receipt = self.must("eth_getTransactionReceipt", json!([hash])).await;
        (!receipt.is_null()).then_some(receipt)
    }

    /// The receipt of `hash` once it is mined. With automine off, this mines one block first
    /// (with everything pending in it).
    pub async fn mined(&self, hash: &str) -> Value {
        if !self.automine.load(Ordering::SeqCst) {
            self.must("evm_mine", json!([])).await;
        }
        let deadline = tokio::time::Instant::now() + MINE_WAIT;
        loop {
            if let Some(receipt) = self.receipt(hash).await {
                return receipt;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{hash} was not mined"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `eth_call` of `data` on `to`: the returned bytes.
    pub async fn view(&self, to: &str, data: &[u8]) -> Vec<u8> {
        let result = self
            .must(
                "eth_call",
                json!([{"to": to, "data": hex_of(data)}, "latest"]),
            )
            .await;
        hex::decode(result.as_str().unwrap().trim_start_matches("0x")).unwrap()
    }

    pub async fn block_number(&self) -> u64 {
        quantity(&self.must("eth_blockNumber", json!([])).await)
    }
}

// ---------------------------------------------------------------------------------------------
// The node

/// How to start a node.
#[derive(Clone, Debug)]
pub struct AnvilOptions {
    pub chain_id: u64,
    /// `false` starts it with `--no-mining`: transactions stay pending until [`Anvil::mine`].
    pub automine: bool,
}

impl Default for AnvilOptions {
    fn default() -> Self {
        AnvilOptions {
            chain_id: DEFAULT_CHAIN_ID,
            automine: true,
        }
    }
}

/// A running Anvil node, killed when dropped.
pub struct Anvil {
    /// `http://127.0.0.1:<port>`: what `PEAQOS_PAYMENT_RPC_URL` takes.
    pub url: String,
    pub port: u16,
    pub chain_id: u64,
    pub rpc: Rpc,
    options: AnvilOptions,
    child: Option<Child>,
    /// The chain as [`Anvil::stop`] left it (`anvil_dumpState`), for [`Anvil::restart`].
    saved_state: Option<Value>,
}

/// Spawns Anvil on `port` (0: any free one) and returns it with the port it listens on.
async fn spawn(options: &AnvilOptions, port: u16) -> (Child, u16) {
    let mut command = Command::new(anvil_binary());
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--chain-id", &options.chain_id.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !options.automine {
        command.arg("--no-mining");
    }
    let mut child = command.spawn().expect("anvil starts");
    let stdout = child.stdout.take().unwrap();
    let (listening, heard) = std::sync::mpsc::channel();
    // A thread, not a task: it outlives any one test's runtime, and Anvil, which logs every
    // call, never finds its pipe full or closed.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                let _ = listening.send(addr.trim().to_string());
            }
        }
    });
    let listening =
        tokio::task::spawn_blocking(move || heard.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("anvil did not listen (port {port} taken?)"));
    let port = listening
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("anvil listens on {listening}?"));
    (child, port)
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Anvil {
    /// A node with [`AnvilOptions::default`].
    pub async fn start() -> Anvil {
        Anvil::start_with(AnvilOptions::default()).await
    }

    pub async fn start_with(options: AnvilOptions) -> Anvil {
        let (child, port) = spawn(&options, 0).await;
        let url = format!("http://127.0.0.1:{port}");
        let node = Anvil {
            rpc: Rpc::new(url.clone(), options.automine),
            url,
            port,
            chain_id: options.chain_id,
            options,
            child: Some(child),
            saved_state: None,
        };
        let chain_id = quantity(&node.rpc.must("eth_chainId", json!([])).await);
        assert_eq!(chain_id, node.chain_id);
        let accounts = node.rpc.must("eth_accounts", json!([])).await;
        assert_eq!(
            accounts[1].as_str().unwrap().to_ascii_lowercase(),
            dev_account(1).address,
            "Anvil's dev accounts are the known ones"
        );
        node
    }

    /// Raw JSON-RPC.
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        self.rpc.call(method, params).await
    }

    /// Turns automine on or off (`evm_setAutomine`).
    pub async fn set_automine(&self, on: bool) {
        self.rpc.must("evm_setAutomine", json!([on])).await;
        self.rpc.automine.store(on, Ordering::SeqCst);
    }

    /// Mines `blocks` blocks (`evm_mine` each), with whatever is pending in the first.
    pub async fn mine(&self, blocks: u64) {
        for _ in 0..blocks {
            self.rpc.must("evm_mine", json!([])).await;
        }
    }

    pub async fn block_number(&self) -> u64 {
        self.rpc.block_number().await
    }

    /// Kills the node (after saving its chain for [`Anvil::restart`]): calls to its URL are
    /// refused until then.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.saved_state = self.rpc.call("anvil_dumpState", json!([])).await.ok();
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the stopped node again on the same port, with the chain it had.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the node is running");
        let (child, _) = spawn(&self.options, self.port).await;
        self.child = Some(child);
        self.rpc
            .automine
            .store(self.options.automine, Ordering::SeqCst);
        if let Some(state) = self.saved_state.take() {
            self.rpc.must("anvil_loadState", json!([state])).await;
        }
    }

    /// Deploys a [`TestToken`] with [`TokenSpec::default`] from dev account 0.
    pub async fn deploy_token(&self) -> TestToken {
        self.deploy_token_with(TokenSpec::default()).await
    }

    pub async fn deploy_token_with(&self, spec: TokenSpec) -> TestToken {
        let artifact = test_token_artifact();
        let mut code = hex::decode(&artifact.bytecode[2..]).unwrap();
        code.extend(
            (
                spec.name.to_string(),
                spec.version.to_string(),
                spec.symbol.to_string(),
                // A uint8 is ABI-encoded as one word, like any uint.
                U256::from(spec.decimals),
            )
                .abi_encode_params(),
        );
        let deployer = dev_account(0).address;
        let hash = self.rpc.send(&deployer, None, &code, None).await;
        let receipt = self.rpc.mined(&hash).await;
        assert_eq!(receipt["status"], "0x1", "deploying TestToken: {receipt}");
        let address = receipt["contractAddress"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase();
        TestToken {
            address,
            spec,
            chain_id: self.chain_id,
            rpc: self.rpc.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The token

/// The constructor arguments of a [`TestToken`].
#[derive(Clone, Debug)]
pub struct TokenSpec {
    /// The EIP-712 domain `name`.
    pub name: &'static str,
    /// The EIP-712 domain `version`.
    pub version: &'static str,
    pub symbol: &'static str,
    pub decimals: u8,
}

impl Default for TokenSpec {
    fn default() -> Self {
        TokenSpec {
            name: "Test USDT",
            version: "1",
            symbol: "USDT",
            decimals: 6,
        }
    }
}

/// A deployed `TestToken.sol`.
#[derive(Clone, Debug)]
pub struct TestToken {
    /// Lower-case `0x` + 40 hex.
    pub address: String,
    pub spec: TokenSpec,
    pub chain_id: u64,
    pub rpc: Rpc,
}

impl TestToken {
    pub fn decimals(&self) -> u32 {
        u32::from(self.spec.decimals)
    }

    /// `amount` (plain decimal) in this token's base units.
    pub fn units(&self, amount: &str) -> U256 {
        units(amount, self.decimals())
    }

    /// Mints `value` base units to `to` (anyone may), mined.
    pub async fn mint(&self, to: &str, value: U256) -> String {
        let data = mintCall {
            to: address(to),
            value,
        }
        .abi_encode();
        let hash = self
            .rpc
            .send(&dev_account(0).address, Some(&self.address), &data, None)
            .await;
        let receipt = self.rpc.mined(&hash).await;
        assert_eq!(receipt["status"], "0x1", "mint: {receipt}");
        hash
    }

    fn transfer_data(to: &str, value: U256) -> Vec<u8> {
        transferCall {
            to: address(to),
            value,
        }
        .abi_encode()
    }

    /// Sends `transfer(to, value)` from the dev account `from` and returns its hash at once
    /// (pending while automine is off).
    pub async fn submit_transfer(&self, from: &str, to: &str, value: U256) -> String {
        self.rpc
            .send(
                from,
                Some(&self.address),
                &Self::transfer_data(to, value),
                None,
            )
            .await
    }

    /// `transfer(to, value)` from the dev account `from`, mined with status 1.
    pub async fn transfer(&self, from: &str, to: &str, value: U256) -> String {
        let hash = self.submit_transfer(from, to, value).await;
        let receipt = self.rpc.mined(&hash).await;
        assert_eq!(receipt["status"], "0x1", "transfer: {receipt}");
        hash
    }

    /// A `transfer` of more than `from` holds, with a fixed gas limit so that it is mined (with
    /// automine on) and fails: status 0, no `Transfer` log.
    pub async fn reverting_transfer(&self, from: &str, to: &str, value: U256) -> String {
        let held = self.balance_of(from).await;
        assert!(
            value > held,
            "the transfer must exceed the balance to revert"
        );
        let hash = self
            .rpc
            .send(
                from,
                Some(&self.address),
                &Self::transfer_data(to, value),
                Some(REVERTING_GAS),
            )
            .await;
        let receipt = self.rpc.mined(&hash).await;
        assert_eq!(receipt["status"], "0x0", "reverting transfer: {receipt}");
        hash
    }

    pub async fn balance_of(&self, owner: &str) -> U256 {
        let data = balanceOfCall {
            owner: address(owner),
        }
        .abi_encode();
        let out = self.rpc.view(&self.address, &data).await;
        balanceOfCall::abi_decode_returns(&out).unwrap()
    }

    /// Whether `authorizer` has used `nonce` (EIP-3009 `authorizationState`).
    pub async fn authorization_used(&self, authorizer: &str, nonce: B256) -> bool {
        let data = authorizationStateCall {
            authorizer: address(authorizer),
            nonce,
        }
        .abi_encode();
        let out = self.rpc.view(&self.address, &data).await;
        authorizationStateCall::abi_decode_returns(&out).unwrap()
    }

    /// The token's EIP-712 domain: `{name, version, chainId, verifyingContract}`.
    pub fn domain(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(self.spec.name.into()),
            Some(self.spec.version.into()),
            Some(U256::from(self.chain_id)),
            Some(address(&self.address)),
            None,
        )
    }

    /// The contract's own `DOMAIN_SEPARATOR()`.
    pub async fn domain_separator(&self) -> B256 {
        let out = self
            .rpc
            .view(&self.address, &DOMAIN_SEPARATORCall {}.abi_encode())
            .await;
        DOMAIN_SEPARATORCall::abi_decode_returns(&out).unwrap()
    }

    /// Settles a signed authorization: `transferWithAuthorization(…, bytes signature)` sent by
    /// the dev account `submitter` (a facilitator pays the gas). Returns the hash once mined,
    /// with the receipt's status (`true` for success).
    pub async fn transfer_with_authorization(
        &self,
        submitter: &str,
        authorization: &Authorization,
        signature: &[u8],
    ) -> (String, bool) {
        let data = transferWithAuthorization_1Call {
            from: address(&authorization.from),
            to: address(&authorization.to),
            value: authorization.value,
            validAfter: U256::from(authorization.valid_after),
            validBefore: U256::from(authorization.valid_before),
            nonce: authorization.nonce,
            signature: signature.to_vec().into(),
        }
        .abi_encode();
        self.settle(submitter, data).await
    }

    /// The same through the `(v, r, s)` overload.
    pub async fn transfer_with_authorization_vrs(
        &self,
        submitter: &str,
        authorization: &Authorization,
        signature: &[u8],
    ) -> (String, bool) {
        assert_eq!(signature.len(), 65);
        let data = transferWithAuthorization_0Call {
            from: address(&authorization.from),
            to: address(&authorization.to),
            value: authorization.value,
            validAfter: U256::from(authorization.valid_after),
            validBefore: U256::from(authorization.valid_before),
            nonce: authorization.nonce,
            v: signature[64],
            r: B256::from_slice(&signature[..32]),
            s: B256::from_slice(&signature[32..64]),
        }
        .abi_encode();
        self.settle(submitter, data).await
    }

    async fn settle(&self, submitter: &str, data: Vec<u8>) -> (String, bool) {
        // A fixed gas limit: a rejected authorization is mined as a failure, not refused.
        let hash = self
            .rpc
            .send(submitter, Some(&self.address), &data, Some(200_000))
            .await;
        let receipt = self.rpc.mined(&hash).await;
        (hash, receipt["status"] == "0x1")
    }
}

/// An EIP-3009 `TransferWithAuthorization`.
#[derive(Clone, Debug)]
pub struct Authorization {
    /// Lower-case `0x` addresses.
    pub from: String,
    pub to: String,
    pub value: U256,
    /// Unix seconds.
    pub valid_after: u64,
    pub valid_before: u64,
    pub nonce: B256,
}

impl Authorization {
    /// `value` from `from` to `to`, valid from an hour ago for an hour, with a random nonce.
    pub fn new(from: &str, to: &str, value: U256) -> Authorization {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Authorization {
            from: from.to_ascii_lowercase(),
            to: to.to_ascii_lowercase(),
            value,
            valid_after: now - 3600,
            valid_before: now + 3600,
            nonce: B256::from(peaqos_orchestrator::store::random_bytes::<32>()),
        }
    }

    fn message(&self) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: address(&self.from),
            to: address(&self.to),
            value: self.value,
            validAfter: U256::from(self.valid_after),
            validBefore: U256::from(self.valid_before),
            nonce: self.nonce,
        }
    }

    /// The EIP-712 digest under `domain`.
    pub fn digest(&self, domain: &Eip712Domain) -> B256 {
        self.message().eip712_signing_hash(domain)
    }

    /// The 65-byte signature r ‖ s ‖ v (low s, v = 27/28) of `key` over [`Self::digest`].
    pub fn sign(&self, key: &DevAccount, domain: &Eip712Domain) -> Vec<u8> {
        let (signature, recovery_id) = key
            .signing_key()
            .sign_prehash_recoverable(self.digest(domain).as_slice());
        let mut raw = signature.to_bytes().to_vec();
        raw.push(27 + u8::from(recovery_id.is_y_odd()));
        raw
    }

    /// The authorization as x402 `payload.authorization` writes it (decimal strings, hex nonce).
    pub fn to_json(&self) -> Value {
        json!({
            "from": self.from, "to": self.to, "value": self.value.to_string(),
            "validAfter": self.valid_after.to_string(), "validBefore": self.valid_before.to_string(),
            "nonce": format!("{:#x}", self.nonce),
        })
    }
}
