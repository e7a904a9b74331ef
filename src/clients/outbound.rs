//! Every outbound connection the server makes, and the rules it is made under (spec
//! agents-and-runtime.md §3): link-local and cloud-metadata addresses are never called, and
//! runtime endpoints and providers are called only at addresses whose network scope is allowed
//! (`PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES`).
//!
//! Both rules are decided by the address actually connected to, never by what a caller
//! declared: host names are checked by [`GuardedResolver`] on **every** address they resolve to
//! (one refused address refuses the name, so the connector cannot fall back onto it), at
//! connection time, so DNS cannot point elsewhere later; literal IP hosts, which never reach a
//! resolver, are checked by [`Guarded::request`] before the request is built. A declared scope
//! may narrow what is allowed, never widen it: an endpoint declared `public` is never connected
//! to at a loopback address, whatever the allowed scopes say.
//!
//! Which scopes an address can be in: loopback addresses (127.0.0.0/8, `::1`) are `loopback`;
//! private addresses (10/8, 172.16/12, 192.168/16, fc00::/7) are `lan` or `vpn`; every other
//! address is `public` or `vpn` (a VPN can use either; the address alone cannot tell).
//!
//! [`Outbound`] holds one client per rule set, each with its own resolver and connection pool,
//! so a connection made under one rule set is never reused under another.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Url};

use crate::config::NetworkScope;

/// Connect timeout of every outbound client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Hosts blocked by name, whatever they resolve to (lower-case, no trailing dot).
const BLOCKED_HOSTNAMES: &[&str] = &["metadata.google.internal"];

/// What kind of address an IP is, for network scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Loopback,
    Private,
    Other,
}

/// 127.0.0.0/8 and `::1` are loopback; 10/8, 172.16/12, 192.168/16 and fc00::/7 are private;
/// IPv4-mapped IPv6 addresses follow their IPv4 address.
pub fn address_kind(ip: IpAddr) -> AddressKind {
    let v4_kind = |v4: Ipv4Addr| {
        let [a, b, ..] = v4.octets();
        if a == 127 {
            AddressKind::Loopback
        } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
            AddressKind::Private
        } else {
            AddressKind::Other
        }
    };
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_kind(v4),
            None if v6 == Ipv6Addr::LOCALHOST => AddressKind::Loopback,
            None if (v6.segments()[0] & 0xfe00) == 0xfc00 => AddressKind::Private,
            None => AddressKind::Other,
        },
    }
}

/// The network scopes an address can belong to.
pub fn possible_scopes(ip: IpAddr) -> &'static [NetworkScope] {
    match address_kind(ip) {
        AddressKind::Loopback => &[NetworkScope::Loopback],
        AddressKind::Private => &[NetworkScope::Lan, NetworkScope::Vpn],
        AddressKind::Other => &[NetworkScope::Public, NetworkScope::Vpn],
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    ip.octets()[0] == 0 // 0.0.0.0/8, "this network"
        || ip.is_link_local() // 169.254.0.0/16, includes 169.254.169.254
        || ip.is_multicast() // 224.0.0.0/4
        || ip.is_broadcast() // 255.255.255.255
        || ip == Ipv4Addr::new(100, 100, 100, 200) // Alibaba Cloud metadata
}

/// The blocked set (§3): 169.254.0.0/16, fe80::/10, 0.0.0.0/8, `::`, multicast (224.0.0.0/4,
/// ff00::/8), broadcast 255.255.255.255 and the metadata addresses 169.254.169.254,
/// fd00:ec2::254 and 100.100.100.200. An IPv6 address embedding a blocked IPv4 address —
/// IPv4-mapped `::ffff:a.b.c.d` or NAT64 `64:ff9b::a.b.c.d` — is blocked too.
pub fn is_blocked_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            let embedded = v6.to_ipv4_mapped().or_else(|| {
                nat64.then(|| {
                    let [.., a, b, c, d] = v6.octets();
                    Ipv4Addr::new(a, b, c, d)
                })
            });
            v6.is_unspecified()
                || (segments[0] & 0xffc0) == 0xfe80 // fe80::/10
                || v6.is_multicast()
                || v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) // AWS metadata
                || embedded.is_some_and(is_blocked_v4)
        }
    }
}

/// The host of a URL as an IP address, when it is a literal one (brackets stripped).
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// A host (as in a URL, IPv6 in brackets or not) in the blocked set: a literal IP checked with
/// [`is_blocked_ip`], or a blocked metadata host name (case-insensitive, trailing dot tolerated).
pub fn is_blocked_host(host: &str) -> bool {
    if let Some(ip) = literal_ip(host) {
        return is_blocked_ip(ip);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    BLOCKED_HOSTNAMES
        .iter()
        .any(|blocked| name.eq_ignore_ascii_case(blocked))
}

/// Why a connection was refused. It travels inside the `reqwest::Error` of a call refused at
/// resolution, so callers can tell a refusal from an ordinary DNS failure.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("the host name is blocked")]
    BlockedHost,
    #[error("the host resolves to the blocked address {0}")]
    BlockedAddress(IpAddr),
    #[error("the address {0} is outside the allowed network scopes")]
    ScopeNotAllowed(IpAddr),
    #[error("DNS lookup failed: {0}")]
    Lookup(std::io::Error),
    #[error("DNS lookup returned no addresses")]
    NoAddresses,
}

impl ResolveError {
    pub fn is_blocked(&self) -> bool {
        matches!(
            self,
            ResolveError::BlockedHost | ResolveError::BlockedAddress(_)
        )
    }

    pub fn is_scope_refusal(&self) -> bool {
        matches!(self, ResolveError::ScopeNotAllowed(_))
    }

    /// The refusal inside a failed call, if the call was refused.
    pub fn of(err: &reqwest::Error) -> Option<&ResolveError> {
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            if let Some(refusal) = cause.downcast_ref::<ResolveError>() {
                return Some(refusal);
            }
            source = cause.source();
        }
        None
    }
}

/// Which addresses one client may connect to.
#[derive(Debug, Clone)]
pub struct ScopePolicy {
    /// `None`: any address outside the blocked set (destinations the operator configured
    /// directly: the MCR API, payment RPC).
    allowed: Option<Vec<NetworkScope>>,
    /// The scope the destination was declared in (runtime endpoints); `None` for providers,
    /// which may be reached in any allowed scope.
    declared: Option<NetworkScope>,
}

impl ScopePolicy {
    /// Blocked addresses only.
    pub fn trusted() -> ScopePolicy {
        ScopePolicy {
            allowed: None,
            declared: None,
        }
    }

    /// Any of the `allowed` scopes (provider calls).
    pub fn any_of(allowed: &[NetworkScope]) -> ScopePolicy {
        ScopePolicy {
            allowed: Some(allowed.to_vec()),
            declared: None,
        }
    }

    /// The `declared` scope only, and only when it is allowed (runtime endpoints).
    pub fn declared(declared: NetworkScope, allowed: &[NetworkScope]) -> ScopePolicy {
        ScopePolicy {
            allowed: Some(allowed.to_vec()),
            declared: Some(declared),
        }
    }

    /// Whether a connection to `ip` is allowed (the blocked set aside).
    pub fn permits(&self, ip: IpAddr) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let possible = possible_scopes(ip);
        match self.declared {
            Some(declared) => allowed.contains(&declared) && possible.contains(&declared),
            None => possible.iter().any(|scope| allowed.contains(scope)),
        }
    }

    /// The connection-time check on resolved addresses: all of them, or none when **any** is
    /// blocked or outside the policy.
    pub fn check_addresses(
        &self,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
        if let Some(blocked) = addrs.iter().find(|a| is_blocked_ip(a.ip())) {
            return Err(ResolveError::BlockedAddress(blocked.ip()));
        }
        if let Some(outside) = addrs.iter().find(|a| !self.permits(a.ip())) {
            return Err(ResolveError::ScopeNotAllowed(outside.ip()));
        }
        if addrs.is_empty() {
            return Err(ResolveError::NoAddresses);
        }
        Ok(addrs)
    }

    /// The same checks on a URL's host before anything is sent: blocked names, and literal IPs
    /// (which no resolver sees).
    pub fn check_host(&self, host: &str) -> Result<(), ResolveError> {
        if let Some(ip) = literal_ip(host) {
            return self.check_addresses([SocketAddr::new(ip, 0)]).map(|_| ());
        }
        if is_blocked_host(host) {
            return Err(ResolveError::BlockedHost);
        }
        Ok(())
    }
}

/// A reqwest DNS resolver that resolves with the system resolver (`tokio::net::lookup_host`)
/// and fails the lookup when the name is blocked or any resolved address is blocked or outside
/// its [`ScopePolicy`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<ScopePolicy>,
}

impl GuardedResolver {
    pub fn new(policy: ScopePolicy) -> Self {
        GuardedResolver {
            policy: Arc::new(policy),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = self.policy.clone();
        Box::pin(async move {
            if is_blocked_host(&host) {
                return Err(ResolveError::BlockedHost.into());
            }
            // Port 0: reqwest puts the URL's (or the scheme's default) port in afterwards.
            let resolved = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(ResolveError::Lookup)?;
            let addrs = policy.check_addresses(resolved)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A client bound to one [`ScopePolicy`]: its resolver enforces the policy on every resolved
/// address, redirects are never followed, and there is no proxy (a proxy would resolve the
/// target itself, out of the guard's reach, so `HTTP(S)_PROXY` is deliberately ignored). Each
/// call sets its own timeout.
#[derive(Debug, Clone)]
pub struct Guarded {
    client: reqwest::Client,
    policy: Arc<ScopePolicy>,
}

impl Guarded {
    pub fn new(policy: ScopePolicy) -> Result<Guarded, reqwest::Error> {
        let resolver = GuardedResolver::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(resolver.clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()?;
        Ok(Guarded {
            client,
            policy: resolver.policy,
        })
    }

    /// A request to `url`, or the refusal when its host is blocked or a literal IP outside the
    /// policy (host names are checked when they are resolved).
    pub fn request(&self, method: Method, url: Url) -> Result<RequestBuilder, ResolveError> {
        let host = url.host_str().ok_or(ResolveError::NoAddresses)?;
        self.policy.check_host(host)?;
        Ok(self.client.request(method, url))
    }

    pub fn policy(&self) -> &ScopePolicy {
        &self.policy
    }

    /// The checks of a connection to `url`, made now, before anything is committed or sent: the
    /// host's addresses are resolved and checked (the connection itself is checked again when
    /// it is made, since DNS may answer differently then).
    pub async fn preflight(&self, url: &Url) -> Result<(), ResolveError> {
        let host = url.host_str().ok_or(ResolveError::NoAddresses)?;
        self.policy.check_host(host)?;
        if literal_ip(host).is_some() {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let resolved = tokio::net::lookup_host((host, port))
            .await
            .map_err(ResolveError::Lookup)?;
        self.policy.check_addresses(resolved).map(|_| ())
    }
}

/// Every outbound client of the server (DESIGN.md: one place for outbound calls).
#[derive(Debug, Clone)]
pub struct Outbound {
    trusted: Guarded,
    providers: Guarded,
    /// One per declared scope that is allowed.
    endpoints: Vec<(NetworkScope, Guarded)>,
}

impl Outbound {
    pub fn new(allowed: &[NetworkScope]) -> Result<Outbound, reqwest::Error> {
        let mut endpoints = Vec::with_capacity(allowed.len());
        for scope in allowed {
            endpoints.push((
                *scope,
                Guarded::new(ScopePolicy::declared(*scope, allowed))?,
            ));
        }
        Ok(Outbound {
            trusted: Guarded::new(ScopePolicy::trusted())?,
            providers: Guarded::new(ScopePolicy::any_of(allowed))?,
            endpoints,
        })
    }

    /// Destinations the operator configured (MCR, payment RPC): the blocked set applies.
    pub fn trusted(&self) -> &Guarded {
        &self.trusted
    }

    /// Provider endpoints of the catalogue: any allowed scope.
    pub fn providers(&self) -> &Guarded {
        &self.providers
    }

    /// A machine's runtime endpoint declared in `scope`; `None` when that scope is not allowed.
    pub fn endpoint(&self, scope: NetworkScope) -> Option<&Guarded> {
        self.endpoints
            .iter()
            .find(|(allowed, _)| *allowed == scope)
            .map(|(_, guarded)| guarded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NetworkScope::*;

    const ALL: [NetworkScope; 4] = [Public, Vpn, Lan, Loopback];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocked_ip_table() {
        for (addr, blocked) in [
            ("169.254.169.254", true),
            ("169.254.0.0", true),
            ("169.254.255.255", true),
            ("169.253.255.255", false),
            ("169.255.0.0", false),
            ("0.0.0.0", true),
            ("0.255.255.255", true),
            ("1.0.0.0", false),
            ("100.100.100.200", true),
            ("100.100.100.201", false),
            ("224.0.0.1", true),
            ("239.255.255.255", true),
            ("255.255.255.255", true),
            ("255.255.255.254", false),
            ("127.0.0.1", false),
            ("10.0.0.1", false),
            ("192.168.0.1", false),
            ("8.8.8.8", false),
            ("::", true),
            ("::1", false),
            ("fe80::1", true),
            ("febf:ffff::1", true),
            ("fec0::1", false),
            ("ff02::1", true),
            ("ff0e::1", true),
            ("fd00:ec2::254", true),
            ("fd00:ec2::253", false),
            ("fc00::1", false),
            ("2001:db8::1", false),
            ("::ffff:169.254.169.254", true),
            ("::ffff:0.0.0.0", true),
            ("::ffff:100.100.100.200", true),
            ("::ffff:224.0.0.1", true),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", false),
            ("64:ff9b::169.254.169.254", true),
            ("64:ff9b::8.8.8.8", false),
        ] {
            assert_eq!(is_blocked_ip(ip(addr)), blocked, "{addr}");
        }
    }

    #[test]
    fn blocked_host_names() {
        for (host, blocked) in [
            ("metadata.google.internal", true),
            ("Metadata.Google.Internal", true),
            ("metadata.google.internal.", true),
            ("metadata.google.internal.example.com", false),
            ("google.internal", false),
            ("169.254.169.254", true),
            ("[fe80::1]", true),
            ("fe80::1", true),
            ("[::1]", false),
            ("localhost", false),
            ("example.com", false),
        ] {
            assert_eq!(is_blocked_host(host), blocked, "{host}");
        }
    }

    #[test]
    fn addresses_have_scopes() {
        for (addr, kind) in [
            ("127.0.0.1", AddressKind::Loopback),
            ("127.9.9.9", AddressKind::Loopback),
            ("::1", AddressKind::Loopback),
            ("::ffff:127.0.0.1", AddressKind::Loopback),
            ("10.1.2.3", AddressKind::Private),
            ("172.16.0.1", AddressKind::Private),
            ("172.31.255.255", AddressKind::Private),
            ("192.168.1.1", AddressKind::Private),
            ("fd12::1", AddressKind::Private),
            ("::ffff:10.0.0.1", AddressKind::Private),
            ("172.32.0.1", AddressKind::Other),
            ("100.64.0.1", AddressKind::Other),
            ("8.8.8.8", AddressKind::Other),
            ("2001:db8::1", AddressKind::Other),
        ] {
            assert_eq!(address_kind(ip(addr)), kind, "{addr}");
        }
    }

    #[test]
    fn a_declared_scope_narrows_and_never_widens() {
        let lan_vpn_public = [Public, Vpn, Lan];
        // Declared public (or lan) at loopback: never, whatever is allowed.
        for declared in [Public, Lan, Vpn] {
            assert!(!ScopePolicy::declared(declared, &ALL).permits(ip("127.0.0.1")));
            assert!(!ScopePolicy::declared(declared, &ALL).permits(ip("::1")));
        }
        assert!(ScopePolicy::declared(Loopback, &ALL).permits(ip("127.0.0.1")));
        assert!(!ScopePolicy::declared(Loopback, &lan_vpn_public).permits(ip("127.0.0.1")));
        // Declared loopback cannot reach out.
        assert!(!ScopePolicy::declared(Loopback, &ALL).permits(ip("8.8.8.8")));
        assert!(!ScopePolicy::declared(Loopback, &ALL).permits(ip("10.0.0.1")));
        // Lan is private addresses only; public is other addresses only.
        assert!(ScopePolicy::declared(Lan, &ALL).permits(ip("192.168.1.5")));
        assert!(!ScopePolicy::declared(Lan, &ALL).permits(ip("8.8.8.8")));
        assert!(ScopePolicy::declared(Public, &ALL).permits(ip("8.8.8.8")));
        assert!(!ScopePolicy::declared(Public, &ALL).permits(ip("10.0.0.1")));
        // A VPN may use private or other addresses, never loopback.
        assert!(ScopePolicy::declared(Vpn, &ALL).permits(ip("10.8.0.2")));
        assert!(ScopePolicy::declared(Vpn, &ALL).permits(ip("100.64.1.2")));
        // A declared scope that is not allowed allows nothing.
        assert!(!ScopePolicy::declared(Lan, &[Public]).permits(ip("10.0.0.1")));
    }

    #[test]
    fn providers_may_use_any_allowed_scope() {
        let public_only = ScopePolicy::any_of(&[Public]);
        assert!(public_only.permits(ip("8.8.8.8")));
        assert!(!public_only.permits(ip("127.0.0.1")));
        assert!(!public_only.permits(ip("10.0.0.1")));
        assert!(ScopePolicy::any_of(&[Vpn]).permits(ip("10.0.0.1")));
        assert!(ScopePolicy::any_of(&ALL).permits(ip("127.0.0.1")));
        assert!(!ScopePolicy::any_of(&[]).permits(ip("8.8.8.8")));
        assert!(ScopePolicy::trusted().permits(ip("127.0.0.1")));
    }

    #[test]
    fn resolved_addresses_are_all_or_nothing() {
        let sock = |s: &str| s.parse::<SocketAddr>().unwrap();
        let any = ScopePolicy::any_of(&ALL);
        let good = vec![
            sock("127.0.0.1:0"),
            sock("[::1]:0"),
            sock("93.184.216.34:443"),
        ];
        assert_eq!(any.check_addresses(good.clone()).unwrap(), good);

        let mixed = vec![sock("93.184.216.34:80"), sock("169.254.169.254:80")];
        match any.check_addresses(mixed) {
            Err(ResolveError::BlockedAddress(ip)) => {
                assert_eq!(ip, super::tests::ip("169.254.169.254"))
            }
            other => panic!("expected a blocked address, got {other:?}"),
        }
        for bad in ["[::ffff:169.254.169.254]:80", "[fe80::1]:80", "0.0.0.0:80"] {
            let err = any
                .check_addresses([sock("8.8.8.8:80"), sock(bad)])
                .unwrap_err();
            assert!(err.is_blocked(), "{bad}");
        }
        let public = ScopePolicy::declared(Public, &ALL);
        let err = public
            .check_addresses([sock("8.8.8.8:80"), sock("127.0.0.1:80")])
            .unwrap_err();
        assert!(err.is_scope_refusal(), "{err}");
        assert!(matches!(
            any.check_addresses(Vec::new()),
            Err(ResolveError::NoAddresses)
        ));
    }

    #[test]
    fn literal_hosts_are_checked_before_sending() {
        let public = ScopePolicy::declared(Public, &ALL);
        assert!(
            public
                .check_host("127.0.0.1")
                .unwrap_err()
                .is_scope_refusal()
        );
        assert!(public.check_host("[::1]").unwrap_err().is_scope_refusal());
        assert!(
            public
                .check_host("169.254.169.254")
                .unwrap_err()
                .is_blocked()
        );
        assert!(
            public
                .check_host("metadata.google.internal")
                .unwrap_err()
                .is_blocked()
        );
        assert!(public.check_host("example.com").is_ok());
        assert!(public.check_host("8.8.8.8").is_ok());
    }
}
