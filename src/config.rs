//! Every setting, read once from the environment and validated at start-up
//! (`spec/configuration.md`). A bad value is a [`ConfigError`] naming the variable and what is
//! allowed; `main` prints it on one line and exits non-zero.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;

/// Where the data lives: picked by `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(Secret),
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The PostgreSQL URL may carry a password.
            DatabaseTarget::Postgres(_) => f.write_str("Postgres([REDACTED])"),
            DatabaseTarget::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
        }
    }
}

/// A value that must never reach a log line or a response.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// 32 key bytes (`PEAQOS_SECRETS_KEY`), redacted in Debug.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `required | optional | disabled`, shared by machine-identity and agent-pairing proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationMode {
    Required,
    Optional,
    Disabled,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// A separate listener for `/metrics` only; when unset, `/metrics` is served on the main port.
    pub metrics_addr: Option<SocketAddr>,
    pub database: DatabaseTarget,
    pub environment: Environment,
    pub log_format: LogFormat,
    pub public_url: Option<String>,
    pub max_body_bytes: usize,
    pub catalog_dir: Option<PathBuf>,
    /// Deadline of every database statement and connection checkout.
    pub database_timeout_ms: u64,
    /// A request's headers must arrive within this (`http::server`).
    pub header_read_timeout_ms: u64,
    /// How long a keep-alive connection may stay idle between requests.
    pub keep_alive_timeout_ms: u64,
    /// A request's body must arrive within this.
    pub body_read_timeout_ms: u64,
    /// Connections open at once.
    pub max_connections: usize,

    pub require_api_auth: bool,
    pub api_keys: Vec<Secret>,
    pub require_agent_pairing_auth: bool,
    pub session_secret: Option<Secret>,
    pub secrets_key: Option<SecretKey>,

    pub machine_identity_verification: VerificationMode,
    pub machine_identity_challenge_ttl_ms: u64,
    pub mcr_api_url: String,
    pub mcr_cache_ttl_ms: u64,
    pub mcr_timeout_ms: u64,

    pub agent_pairing_verification: VerificationMode,
    pub agent_pairing_challenge_ttl_ms: u64,
    pub agent_pairing_session_ttl_ms: u64,

    pub market_quote_ttl_ms: u64,
    pub require_market_quotes: bool,
    /// An order left `executing` longer than this is failed by the background runner.
    pub order_execution_timeout_ms: u64,

    pub enforce_service_payment_rails: bool,
    pub require_payment_before_execute: bool,
    pub require_payment_rpc_verification: bool,
    pub payment_rpc_urls: Vec<String>,
    pub usdt_contract: Option<String>,
    pub usdt_decimals: u32,
    pub payment_min_confirmations: u64,

    pub runtime_probe_interval_ms: u64,
    pub runtime_allowed_network_scopes: Vec<NetworkScope>,

    /// Serve the operator console at `/console` (`src/console`).
    pub console_enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkScope {
    Public,
    Vpn,
    Lan,
    Loopback,
}

impl NetworkScope {
    const ALL: [(&'static str, NetworkScope); 4] = [
        ("public", NetworkScope::Public),
        ("vpn", NetworkScope::Vpn),
        ("lan", NetworkScope::Lan),
        ("loopback", NetworkScope::Loopback),
    ];

    /// The wire value (`public`, `vpn`, `lan`, `loopback`).
    pub fn as_str(self) -> &'static str {
        NetworkScope::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map(|(name, _)| *name)
            .expect("every scope is in the table")
    }

    /// Parses a wire value; exact lower-case match only.
    pub fn parse(value: &str) -> Option<NetworkScope> {
        NetworkScope::ALL
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, s)| *s)
    }
}

/// A setting the server refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn invalid(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// Reads variables through a lookup function, so tests can build a config without touching the
/// process environment. Empty values count as unset.
struct Vars<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }

    fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(invalid(name, format!("expected true or false, got {v:?}"))),
            },
        }
    }

    fn uint(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| invalid(name, format!("expected a non-negative integer, got {v:?}"))),
        }
    }

    /// A duration or count that must be at least 1.
    fn positive(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.uint(name, default)? {
            0 => Err(invalid(name, "must be at least 1")),
            value => Ok(value),
        }
    }

    fn choice<T: Copy>(
        &self,
        name: &'static str,
        default: T,
        allowed: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        allowed
            .iter()
            .find(|(key, _)| *key == v)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|(k, _)| *k).collect();
                invalid(
                    name,
                    format!("expected one of {}, got {v:?}", names.join(" | ")),
                )
            })
    }

    fn verification(&self, name: &'static str) -> Result<VerificationMode, ConfigError> {
        self.choice(
            name,
            VerificationMode::Required,
            &[
                ("required", VerificationMode::Required),
                ("optional", VerificationMode::Optional),
                ("disabled", VerificationMode::Disabled),
            ],
        )
    }

    fn http_url(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                let parsed = reqwest::Url::parse(&v)
                    .map_err(|_| invalid(name, format!("expected an http(s) URL, got {v:?}")))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(invalid(name, format!("expected an http(s) URL, got {v:?}")));
                }
                Ok(Some(v.trim_end_matches('/').to_string()))
            }
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars = Vars(lookup);

        let listen_addr = match vars.get("PEAQOS_LISTEN_ADDR") {
            // Loopback by default: a newcomer's first run must not serve the API to its network.
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.parse().map_err(|_| {
                invalid(
                    "PEAQOS_LISTEN_ADDR",
                    format!("expected a socket address such as 127.0.0.1:8080, got {v:?}"),
                )
            })?,
        };

        let metrics_addr = match vars.get("PEAQOS_METRICS_ADDR") {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                invalid(
                    "PEAQOS_METRICS_ADDR",
                    format!("expected a socket address such as 127.0.0.1:9090, got {v:?}"),
                )
            })?),
        };

        let database = match vars.get("DATABASE_URL") {
            None => DatabaseTarget::Sqlite(PathBuf::from("data/orchestrator.db")),
            Some(url) => parse_database_url(&url)?,
        };

        let environment = vars.choice(
            "PEAQOS_ENV",
            Environment::Development,
            &[
                ("development", Environment::Development),
                ("production", Environment::Production),
            ],
        )?;
        let log_format = vars.choice(
            "PEAQOS_LOG_FORMAT",
            LogFormat::Text,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )?;

        let public_url = match vars.http_url("PEAQOS_PUBLIC_URL")? {
            None => None,
            Some(v) => {
                let parsed = reqwest::Url::parse(&v).expect("validated above");
                if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(invalid(
                        "PEAQOS_PUBLIC_URL",
                        "expected an origin http(s)://host[:port] without a path",
                    ));
                }
                Some(v)
            }
        };

        let max_body_bytes = vars.uint("PEAQOS_MAX_BODY_BYTES", 1_048_576)?;
        if max_body_bytes == 0 {
            return Err(invalid("PEAQOS_MAX_BODY_BYTES", "must be at least 1"));
        }

        let require_api_auth = vars.bool("PEAQOS_REQUIRE_API_AUTH", false)?;
        let mut api_keys: Vec<Secret> = Vec::new();
        if let Some(key) = vars.get("PEAQOS_API_KEY") {
            api_keys.push(Secret(key));
        }
        if let Some(keys) = vars.get("PEAQOS_API_KEYS") {
            api_keys.extend(
                keys.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| Secret(k.to_string())),
            );
        }
        if require_api_auth && api_keys.is_empty() {
            return Err(invalid(
                "PEAQOS_REQUIRE_API_AUTH",
                "is true but no key is set in PEAQOS_API_KEY or PEAQOS_API_KEYS",
            ));
        }

        let session_secret = vars.get("PEAQOS_AGENT_PAIRING_SESSION_SECRET").map(Secret);
        match &session_secret {
            Some(s) if s.0.len() < 32 => {
                return Err(invalid(
                    "PEAQOS_AGENT_PAIRING_SESSION_SECRET",
                    "must be at least 32 bytes long",
                ));
            }
            None if environment == Environment::Production => {
                return Err(invalid(
                    "PEAQOS_AGENT_PAIRING_SESSION_SECRET",
                    "is required when PEAQOS_ENV=production",
                ));
            }
            _ => {}
        }

        let secrets_key = match vars.get("PEAQOS_SECRETS_KEY") {
            None => None,
            Some(v) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        invalid("PEAQOS_SECRETS_KEY", "expected 32 bytes encoded as base64")
                    })?;
                Some(SecretKey(bytes))
            }
        };

        let scopes = match vars.get("PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES") {
            None => NetworkScope::ALL.iter().map(|(_, s)| *s).collect(),
            Some(v) => {
                let mut scopes = Vec::new();
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let scope = NetworkScope::ALL
                        .iter()
                        .find(|(name, _)| *name == part)
                        .map(|(_, s)| *s)
                        .ok_or_else(|| {
                            invalid(
                                "PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES",
                                format!(
                                    "expected a comma-separated list of public, vpn, lan, loopback; got {part:?}"
                                ),
                            )
                        })?;
                    if !scopes.contains(&scope) {
                        scopes.push(scope);
                    }
                }
                scopes
            }
        };

        let usdt_decimals = vars.uint("PEAQOS_USDT_DECIMALS", 6)?;
        if usdt_decimals > 36 {
            return Err(invalid("PEAQOS_USDT_DECIMALS", "must be between 0 and 36"));
        }

        let mut payment_rpc_urls = Vec::new();
        for name in [
            "PEAQOS_PAYMENT_RPC_URL",
            "PEAQ_EVM_RPC_URL",
            "PEAQOS_EVM_RPC_URL",
        ] {
            if let Some(url) = vars.http_url(name)? {
                payment_rpc_urls.push(url);
            }
        }

        let usdt_contract = match vars.get("PEAQOS_USDT_CONTRACT") {
            None => None,
            Some(v) => {
                let lower = v.to_ascii_lowercase();
                let hex = lower.strip_prefix("0x").unwrap_or("");
                if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(
                        "PEAQOS_USDT_CONTRACT",
                        "expected a 0x-prefixed 20-byte hex address",
                    ));
                }
                Some(lower)
            }
        };

        Ok(Config {
            listen_addr,
            metrics_addr,
            database,
            environment,
            log_format,
            public_url,
            max_body_bytes: usize::try_from(max_body_bytes)
                .map_err(|_| invalid("PEAQOS_MAX_BODY_BYTES", "too large"))?,
            catalog_dir: vars.get("PEAQOS_CATALOG_DIR").map(PathBuf::from),
            database_timeout_ms: vars.positive("PEAQOS_DATABASE_TIMEOUT_MS", 5_000)?,
            header_read_timeout_ms: vars.positive("PEAQOS_HEADER_READ_TIMEOUT_MS", 10_000)?,
            keep_alive_timeout_ms: vars.positive("PEAQOS_KEEP_ALIVE_TIMEOUT_MS", 60_000)?,
            body_read_timeout_ms: vars.positive("PEAQOS_BODY_READ_TIMEOUT_MS", 30_000)?,
            max_connections: usize::try_from(vars.positive("PEAQOS_MAX_CONNECTIONS", 1024)?)
                .map_err(|_| invalid("PEAQOS_MAX_CONNECTIONS", "too large"))?,
            require_api_auth,
            api_keys,
            require_agent_pairing_auth: vars.bool("PEAQOS_REQUIRE_AGENT_PAIRING_AUTH", true)?,
            session_secret,
            secrets_key,
            machine_identity_verification: vars
                .verification("PEAQOS_MACHINE_IDENTITY_VERIFICATION")?,
            machine_identity_challenge_ttl_ms: vars
                .uint("PEAQOS_MACHINE_IDENTITY_CHALLENGE_TTL_MS", 600_000)?,
            mcr_api_url: vars
                .http_url("PEAQOS_MCR_API_URL")?
                .unwrap_or_else(|| "https://mcr.peaq.xyz".to_string()),
            mcr_cache_ttl_ms: vars.uint("PEAQOS_MCR_CACHE_TTL_MS", 30_000)?,
            mcr_timeout_ms: vars.positive("PEAQOS_MCR_TIMEOUT_MS", 10_000)?,
            agent_pairing_verification: vars.verification("PEAQOS_AGENT_PAIRING_VERIFICATION")?,
            agent_pairing_challenge_ttl_ms: vars
                .uint("PEAQOS_AGENT_PAIRING_CHALLENGE_TTL_MS", 600_000)?,
            agent_pairing_session_ttl_ms: vars
                .uint("PEAQOS_AGENT_PAIRING_SESSION_TTL_MS", 3_600_000)?,
            market_quote_ttl_ms: vars.uint("PEAQOS_MARKET_QUOTE_TTL_MS", 300_000)?,
            require_market_quotes: vars.bool("PEAQOS_REQUIRE_MARKET_QUOTES", false)?,
            order_execution_timeout_ms: vars
                .positive("PEAQOS_ORDER_EXECUTION_TIMEOUT_MS", 600_000)?,
            enforce_service_payment_rails: vars
                .bool("PEAQOS_ENFORCE_SERVICE_PAYMENT_RAILS", false)?,
            require_payment_before_execute: vars
                .bool("PEAQOS_REQUIRE_PAYMENT_BEFORE_EXECUTE", false)?,
            require_payment_rpc_verification: vars
                .bool("PEAQOS_REQUIRE_PAYMENT_RPC_VERIFICATION", false)?,
            payment_rpc_urls,
            usdt_contract,
            usdt_decimals: usdt_decimals as u32,
            payment_min_confirmations: vars.uint("PEAQOS_PAYMENT_MIN_CONFIRMATIONS", 0)?,
            runtime_probe_interval_ms: vars.uint("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", 30_000)?,
            runtime_allowed_network_scopes: scopes,
            console_enabled: vars.bool("PEAQOS_CONSOLE_ENABLED", true)?,
        })
    }

    /// Start-up warnings: verification turned off, an open API, a generated secret.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if !self.listen_addr.ip().is_loopback() && !self.require_api_auth {
            warnings.push("listening beyond loopback with PEAQOS_REQUIRE_API_AUTH=false: anyone who can reach this address can use the whole API; set PEAQOS_REQUIRE_API_AUTH=true and PEAQOS_API_KEY");
        }
        if self.machine_identity_verification == VerificationMode::Disabled {
            warnings.push("PEAQOS_MACHINE_IDENTITY_VERIFICATION=disabled: machine identity proofs are not checked");
        }
        if self.agent_pairing_verification == VerificationMode::Disabled {
            warnings.push(
                "PEAQOS_AGENT_PAIRING_VERIFICATION=disabled: agent pairing proofs are not checked",
            );
        }
        if self.environment == Environment::Production && !self.require_api_auth {
            warnings.push("PEAQOS_ENV=production with PEAQOS_REQUIRE_API_AUTH=false: the API is open to anyone who can reach it");
        }
        warnings
    }
}

fn parse_database_url(url: &str) -> Result<DatabaseTarget, ConfigError> {
    const NAME: &str = "DATABASE_URL";
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseTarget::Postgres(Secret(url.to_string())));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(invalid(
                NAME,
                "a SQLite URL needs a file path (sqlite://<path> or sqlite:<path>)",
            ));
        }
        return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
    }
    Err(invalid(
        NAME,
        "expected postgres://…, postgresql://…, sqlite://<path> or sqlite:<path>",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_variables() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        assert_eq!(
            c.database,
            DatabaseTarget::Sqlite(PathBuf::from("data/orchestrator.db"))
        );
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert!(!c.require_api_auth);
        assert!(c.require_agent_pairing_auth);
        assert_eq!(c.mcr_api_url, "https://mcr.peaq.xyz");
        assert_eq!(c.runtime_allowed_network_scopes.len(), 4);
        assert!(c.console_enabled);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[("PEAQOS_MAX_BODY_BYTES", ""), ("DATABASE_URL", "")]).unwrap();
        assert_eq!(c.max_body_bytes, 1_048_576);
    }

    #[test]
    fn database_urls() {
        let c = config(&[("DATABASE_URL", "sqlite:///tmp/x.db")]).unwrap();
        assert_eq!(c.database, DatabaseTarget::Sqlite("/tmp/x.db".into()));
        let c = config(&[("DATABASE_URL", "sqlite:rel/x.db")]).unwrap();
        assert_eq!(c.database, DatabaseTarget::Sqlite("rel/x.db".into()));
        let c = config(&[("DATABASE_URL", "postgresql://u:pw@h/db")]).unwrap();
        assert!(matches!(c.database, DatabaseTarget::Postgres(_)));
        assert!(!format!("{:?}", c.database).contains("pw"));
        let err = config(&[("DATABASE_URL", "mysql://h/db")]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("PEAQOS_REQUIRE_API_AUTH", "yes"),
            ("PEAQOS_MAX_BODY_BYTES", "-1"),
            ("PEAQOS_LISTEN_ADDR", "localhost"),
            ("PEAQOS_LOG_FORMAT", "JSON"),
            ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "off"),
            ("PEAQOS_MCR_API_URL", "ftp://x"),
            ("PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES", "public,moon"),
            ("PEAQOS_SECRETS_KEY", "c2hvcnQ="),
            ("PEAQOS_AGENT_PAIRING_SESSION_SECRET", "too-short"),
            ("PEAQOS_PUBLIC_URL", "https://x.example/path"),
            ("PEAQOS_ORDER_EXECUTION_TIMEOUT_MS", "0"),
            ("PEAQOS_USDT_DECIMALS", "37"),
            ("PEAQOS_USDT_CONTRACT", "0x1234"),
            ("PEAQOS_PAYMENT_RPC_URL", "ws://node"),
            ("PEAQOS_PAYMENT_MIN_CONFIRMATIONS", "-1"),
            ("PEAQOS_ENFORCE_SERVICE_PAYMENT_RAILS", "maybe"),
            ("PEAQOS_CONSOLE_ENABLED", "off"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
            assert!(err.to_string().starts_with("invalid configuration: "));
        }
    }

    #[test]
    fn api_auth_needs_a_key() {
        let err = config(&[("PEAQOS_REQUIRE_API_AUTH", "true")]).unwrap_err();
        assert_eq!(err.variable, "PEAQOS_REQUIRE_API_AUTH");
        let c = config(&[
            ("PEAQOS_REQUIRE_API_AUTH", "TRUE"),
            ("PEAQOS_API_KEYS", " a , ,b "),
        ])
        .unwrap();
        assert_eq!(c.api_keys, vec![Secret::new("a"), Secret::new("b")]);
    }

    #[test]
    fn an_open_listener_without_api_auth_warns() {
        let open = config(&[("PEAQOS_LISTEN_ADDR", "0.0.0.0:8080")]).unwrap();
        assert!(
            open.warnings()
                .iter()
                .any(|w| w.contains("beyond loopback"))
        );
        let guarded = config(&[
            ("PEAQOS_LISTEN_ADDR", "0.0.0.0:8080"),
            ("PEAQOS_REQUIRE_API_AUTH", "true"),
            ("PEAQOS_API_KEY", "k"),
        ])
        .unwrap();
        assert!(guarded.warnings().is_empty());
        let v6 = config(&[("PEAQOS_LISTEN_ADDR", "[::1]:8080")]).unwrap();
        assert!(v6.warnings().is_empty());
    }

    #[test]
    fn the_console_can_be_turned_off() {
        let off = config(&[("PEAQOS_CONSOLE_ENABLED", "false")]).unwrap();
        assert!(!off.console_enabled);
        let on = config(&[("PEAQOS_CONSOLE_ENABLED", "1")]).unwrap();
        assert!(on.console_enabled);
    }

    #[test]
    fn production_needs_a_session_secret() {
        let err = config(&[("PEAQOS_ENV", "production")]).unwrap_err();
        assert_eq!(err.variable, "PEAQOS_AGENT_PAIRING_SESSION_SECRET");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = config(&[
            ("PEAQOS_API_KEY", "key-that-must-not-leak"),
            (
                "PEAQOS_AGENT_PAIRING_SESSION_SECRET",
                "secret-that-must-not-leak-0123456789",
            ),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("must-not-leak"));
    }
}
