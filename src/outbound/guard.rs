//! The network policy of outbound HTTP (the `http` step, chat notifications): which addresses
//! flowd may connect to, and the DNS resolver that enforces it.
//!
//! Flows are written by people who should not be able to read the cloud metadata service or poke
//! at link-local devices through flowd (server-side request forgery). So these targets are
//! always refused: 169.254.0.0/16, fe80::/10, fd00:ec2::254/128 and 100.100.100.200/32. An IPv6
//! address that embeds an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) is checked in both forms, so
//! `[::ffff:169.254.169.254]` is refused too. `FLOWD_HTTP_DENY` adds ranges to refuse;
//! `FLOWD_HTTP_ALLOW`, when set, is the only set of ranges allowed (deny still wins). Loopback
//! and private ranges are allowed by default, because tests and many users deliver to local
//! services.
//!
//! The check runs on the address actually connected to: [`GuardedResolver`] is the client's
//! resolver and drops refused addresses, so a DNS name cannot route around the policy. The HTTP
//! connector does not call the resolver for IP-literal hosts, so [`NetPolicy::check_url`] checks
//! those before a request (and each redirect hop) is sent. The `url` crate has already
//! normalised numeric spellings such as `http://2852039166/` or `http://0xa9fea9fe/` to
//! `169.254.169.254` by then.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Ranges no flow may reach, whatever the configuration says.
pub const ALWAYS_REFUSED: [&str; 4] = [
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
];

/// Which addresses outbound requests may connect to, and whether plain `http://` is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetPolicy {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    require_https: bool,
}

/// A bad `FLOWD_HTTP_*` setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{var}: \"{value}\" is not an IP address or CIDR range")]
    BadRange { var: &'static str, value: String },
    #[error("{var}: expected true or false, got \"{value}\"")]
    BadBool { var: &'static str, value: String },
}

/// Why a target was refused. Nothing has been sent when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("address {0} is refused by the network policy")]
    Refused(IpAddr),
    #[error("URL scheme \"{0}\" is not allowed; use http or https")]
    Scheme(String),
    #[error("plain http is refused: FLOWD_HTTP_REQUIRE_HTTPS=true requires an https:// URL")]
    NotHttps,
    #[error("the URL has no host")]
    NoHost,
}

impl NetPolicy {
    /// A policy refusing `deny` (on top of [`ALWAYS_REFUSED`]) and, when `allow` is not empty,
    /// everything outside `allow`.
    pub fn new(deny: Vec<IpNet>, allow: Vec<IpNet>, require_https: bool) -> NetPolicy {
        NetPolicy {
            deny,
            allow,
            require_https,
        }
    }

    /// Reads `FLOWD_HTTP_DENY`, `FLOWD_HTTP_ALLOW` and `FLOWD_HTTP_REQUIRE_HTTPS` through `get`
    /// (the command line's `Config`, tests). `FLOWD_HTTP_REQUIRE_HTTPS` takes `true`, `1`,
    /// `yes`, `on` or `false`, `0`, `no`, `off`, empty (any case); anything else is an error.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<NetPolicy, PolicyError> {
        let deny = parse_ranges("FLOWD_HTTP_DENY", get("FLOWD_HTTP_DENY").as_deref())?;
        let allow = parse_ranges("FLOWD_HTTP_ALLOW", get("FLOWD_HTTP_ALLOW").as_deref())?;
        let require_https = parse_bool(
            "FLOWD_HTTP_REQUIRE_HTTPS",
            get("FLOWD_HTTP_REQUIRE_HTTPS").as_deref(),
        )?;
        Ok(NetPolicy::new(deny, allow, require_https))
    }

    pub fn require_https(&self) -> bool {
        self.require_https
    }

    /// Whether flowd may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), GuardError> {
        let forms = address_forms(ip);
        let refused = forms
            .iter()
            .any(|addr| always_refused(*addr) || self.deny.iter().any(|net| net.contains(addr)));
        let outside_allow = !self.allow.is_empty()
            && !forms
                .iter()
                .any(|addr| self.allow.iter().any(|net| net.contains(addr)));
        if refused || outside_allow {
            return Err(GuardError::Refused(ip));
        }
        Ok(())
    }

    /// Checks what can be checked before connecting: the scheme, the https rule and an
    /// IP-literal host. Host names are checked by [`GuardedResolver`] when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), GuardError> {
        match url.scheme() {
            "https" => {}
            "http" if !self.require_https => {}
            "http" => return Err(GuardError::NotHttps),
            other => return Err(GuardError::Scheme(other.to_owned())),
        }
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            // The url crate turns every numeric IPv4 spelling into Host::Ipv4; this is a second
            // line of defence should a domain still parse as an address.
            Some(Host::Domain(name)) => match name.parse::<IpAddr>() {
                Ok(ip) => self.check_ip(ip),
                Err(_) => Ok(()),
            },
            None => Err(GuardError::NoHost),
        }
    }
}

fn parse_ranges(var: &'static str, value: Option<&str>) -> Result<Vec<IpNet>, PolicyError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse_range(item).ok_or_else(|| bad_range(var, item)))
        .collect()
}

/// A CIDR range, or a bare address meaning just that address.
fn parse_range(item: &str) -> Option<IpNet> {
    item.parse::<IpNet>()
        .ok()
        .or_else(|| item.parse::<IpAddr>().ok().map(IpNet::from))
}

fn bad_range(var: &'static str, value: &str) -> PolicyError {
    PolicyError::BadRange {
        var,
        value: value.to_owned(),
    }
}

fn parse_bool(var: &'static str, value: Option<&str>) -> Result<bool, PolicyError> {
    let Some(value) = value else {
        return Ok(false);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(PolicyError::BadBool {
            var,
            value: value.to_owned(),
        }),
    }
}

fn always_refused(ip: IpAddr) -> bool {
    ALWAYS_REFUSED
        .iter()
        .filter_map(|range| range.parse::<IpNet>().ok())
        .any(|net| net.contains(&ip))
}

/// The address itself plus, for IPv6 addresses that carry an IPv4 address, that IPv4 address:
/// a connection to `::ffff:169.254.169.254` reaches 169.254.169.254.
fn address_forms(ip: IpAddr) -> Vec<IpAddr> {
    match ip {
        IpAddr::V4(_) => vec![ip],
        IpAddr::V6(v6) => {
            let mut forms = vec![ip];
            forms.extend(embedded_ipv4(v6).map(IpAddr::V4));
            forms
        }
    }
}

fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let o = ip.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    // IPv4-compatible (::a.b.c.d), deprecated but still parsed; `::` and `::1` are not IPv4.
    let compatible = s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback();
    (nat64 || compatible).then_some(low)
}

/// Resolves host names with the system resolver (through tokio) and drops the addresses the
/// policy refuses. A static host table, consulted first, lets tests map names to addresses
/// without DNS (reqwest's own `resolve` overrides would bypass this filter, so they are not used).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<NetPolicy>,
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
}

/// Why a name could not be resolved to an allowed address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(#[from] GuardError),
    #[error("DNS lookup of {name} failed: {source}")]
    Lookup { name: String, source: io::Error },
    #[error("DNS lookup of {name} returned no address")]
    NoAddress { name: String },
}

impl GuardedResolver {
    pub fn new(policy: Arc<NetPolicy>, hosts: HashMap<String, Vec<IpAddr>>) -> GuardedResolver {
        let hosts = hosts
            .into_iter()
            .map(|(name, ips)| (name.to_ascii_lowercase(), ips))
            .collect();
        GuardedResolver {
            policy,
            hosts: Arc::new(hosts),
        }
    }

    /// The allowed addresses of `name` (port 0: the connector puts the URL's port in).
    pub async fn lookup(&self, name: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let found = self.lookup_unfiltered(name).await?;
        let Some(first) = found.first().copied() else {
            return Err(ResolveError::NoAddress {
                name: name.to_owned(),
            });
        };
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|addr| self.allowed(name, addr.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(GuardError::Refused(first.ip()).into());
        }
        Ok(allowed)
    }

    async fn lookup_unfiltered(&self, name: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Some(ips) = self.hosts.get(&name.to_ascii_lowercase()) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect());
        }
        match tokio::net::lookup_host((name, 0)).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(source) => Err(ResolveError::Lookup {
                name: name.to_owned(),
                source,
            }),
        }
    }

    fn allowed(&self, name: &str, ip: IpAddr) -> bool {
        let verdict = self.policy.check_ip(ip);
        if verdict.is_err() {
            tracing::warn!(host = name, address = %ip, "Address refused by the network policy.");
        }
        verdict.is_ok()
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolver.lookup(&name).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Finds a policy refusal in an error chain (reqwest wraps resolver and redirect errors, at times
/// inside an `io::Error`, whose `source()` skips the wrapped error itself).
pub fn find_refusal(err: &(dyn StdError + 'static)) -> Option<GuardError> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = refusal_in(e) {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn refusal_in(e: &(dyn StdError + 'static)) -> Option<GuardError> {
    if let Some(guard) = e.downcast_ref::<GuardError>() {
        return Some(guard.clone());
    }
    if let Some(ResolveError::Refused(guard)) = e.downcast_ref::<ResolveError>() {
        return Some(guard.clone());
    }
    let inner = e.downcast_ref::<io::Error>()?.get_ref()?;
    find_refusal(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    fn refused(policy: &NetPolicy, s: &str) -> bool {
        policy.check_ip(ip(s)).is_err()
    }

    fn policy(vars: &[(&str, &str)]) -> Result<NetPolicy, PolicyError> {
        NetPolicy::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn metadata_and_link_local_are_always_refused() {
        let p = NetPolicy::default();
        for addr in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::ffff:100.100.100.200",
        ] {
            assert!(refused(&p, addr), "{addr} should be refused");
        }
    }

    #[test]
    fn loopback_and_private_are_allowed_by_default() {
        let p = NetPolicy::default();
        for addr in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.100.100.201",
            "93.184.216.34",
        ] {
            assert!(!refused(&p, addr), "{addr} should be allowed");
        }
    }

    #[test]
    fn numeric_spellings_normalise_to_the_metadata_address() {
        let p = NetPolicy::default();
        for spelling in [
            "http://169.254.169.254/",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[fe80::1]/",
            "https://[fd00:ec2::254]/latest/meta-data/",
            "http://100.100.100.200/",
        ] {
            let parsed = url(spelling);
            assert!(
                matches!(p.check_url(&parsed), Err(GuardError::Refused(_))),
                "{spelling} (parsed as {parsed}) should be refused"
            );
        }
        assert_eq!(
            url("http://2852039166/").host_str(),
            Some("169.254.169.254")
        );
        assert_eq!(
            url("http://0xa9fea9fe/").host_str(),
            Some("169.254.169.254")
        );
    }

    #[test]
    fn deny_list_adds_ranges_and_matches_mapped_forms() {
        let p = policy(&[("FLOWD_HTTP_DENY", " 10.0.0.0/8 , 127.0.0.2,")]).expect("policy");
        assert!(refused(&p, "10.9.9.9"));
        assert!(refused(&p, "::ffff:10.9.9.9"));
        assert!(refused(&p, "127.0.0.2"));
        assert!(!refused(&p, "127.0.0.1"));
    }

    #[test]
    fn allow_list_is_exclusive_and_deny_wins() {
        let p = policy(&[
            ("FLOWD_HTTP_ALLOW", "127.0.0.0/8,169.254.0.0/16"),
            ("FLOWD_HTTP_DENY", "127.0.0.3/32"),
        ])
        .expect("policy");
        assert!(!refused(&p, "127.0.0.1"));
        assert!(!refused(&p, "::ffff:127.0.0.1"));
        assert!(refused(&p, "10.0.0.1"));
        assert!(refused(&p, "::1"));
        assert!(refused(&p, "127.0.0.3"), "deny wins over allow");
        assert!(
            refused(&p, "169.254.169.254"),
            "always refused wins over allow"
        );
    }

    #[test]
    fn require_https_refuses_plain_http() {
        let p = policy(&[("FLOWD_HTTP_REQUIRE_HTTPS", "true")]).expect("policy");
        assert!(p.require_https());
        assert_eq!(
            p.check_url(&url("http://example.com/")),
            Err(GuardError::NotHttps)
        );
        assert_eq!(p.check_url(&url("https://example.com/")), Ok(()));
        let open = NetPolicy::default();
        assert_eq!(open.check_url(&url("http://example.com/")), Ok(()));
    }

    #[test]
    fn other_schemes_are_refused() {
        let p = NetPolicy::default();
        assert!(matches!(
            p.check_url(&url("file:///etc/passwd")),
            Err(GuardError::Scheme(_))
        ));
        assert!(matches!(
            p.check_url(&url("ftp://example.com/")),
            Err(GuardError::Scheme(_))
        ));
    }

    #[test]
    fn bad_settings_are_reported() {
        assert!(matches!(
            policy(&[("FLOWD_HTTP_DENY", "10.0.0.0/33")]),
            Err(PolicyError::BadRange {
                var: "FLOWD_HTTP_DENY",
                ..
            })
        ));
        assert!(matches!(
            policy(&[("FLOWD_HTTP_ALLOW", "localhost")]),
            Err(PolicyError::BadRange { .. })
        ));
        assert!(matches!(
            policy(&[("FLOWD_HTTP_REQUIRE_HTTPS", "maybe")]),
            Err(PolicyError::BadBool { .. })
        ));
        assert_eq!(policy(&[]), Ok(NetPolicy::default()));
    }

    #[tokio::test]
    async fn resolver_drops_refused_addresses() {
        let hosts = HashMap::from([
            ("metadata.test".to_owned(), vec![ip("169.254.169.254")]),
            (
                "Mixed.Test".to_owned(),
                vec![ip("169.254.169.254"), ip("127.0.0.1")],
            ),
        ]);
        let resolver = GuardedResolver::new(Arc::new(NetPolicy::default()), hosts);
        let err = resolver.lookup("metadata.test").await.expect_err("refused");
        assert_eq!(
            err.to_string(),
            "address 169.254.169.254 is refused by the network policy"
        );
        let mixed = resolver.lookup("mixed.test").await.expect("one allowed");
        assert_eq!(mixed, vec![SocketAddr::new(ip("127.0.0.1"), 0)]);
    }

    #[tokio::test]
    async fn resolver_checks_system_lookups_too() {
        let resolver = GuardedResolver::new(Arc::new(NetPolicy::default()), HashMap::new());
        // getaddrinfo accepts numeric names without asking DNS.
        let err = resolver
            .lookup("169.254.169.254")
            .await
            .expect_err("refused");
        assert!(matches!(err, ResolveError::Refused(_)));
        let ok = resolver.lookup("127.0.0.1").await.expect("loopback");
        assert_eq!(ok, vec![SocketAddr::new(ip("127.0.0.1"), 0)]);
    }

    #[test]
    fn refusal_is_found_inside_io_errors() {
        let wrapped = io::Error::other(ResolveError::Refused(GuardError::Refused(ip(
            "169.254.169.254",
        ))));
        assert_eq!(
            find_refusal(&wrapped),
            Some(GuardError::Refused(ip("169.254.169.254")))
        );
        assert_eq!(find_refusal(&io::Error::other("no")), None);
    }
}
