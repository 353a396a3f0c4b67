//! The egress policy as plain data and pure decisions: the `egress.allow` entries, the
//! providers' origins, the scheme rule, and what each check (a URL, a resolved address)
//! says. No I/O here; the client in `client` asks these questions.

use super::ranges::{classify, AddressClass};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use url::{Host, Url};

/// Redirect hops followed before the download or webhook is refused.
pub const MAX_REDIRECTS: usize = 10;

/// One `egress.allow` entry: a host, a host and port, or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// `10.1.0.0/16`, or one address (`10.0.0.5`, `::1`): any port.
    Net(IpNet),
    /// `127.0.0.1:8080`, `[::1]:8080`: that address on that port only.
    Socket(SocketAddr),
    /// `sim.internal`: that name on any port, whatever it resolves to.
    Name(String),
    /// `sim.internal:8080`: that name on that port, whatever it resolves to.
    NamePort(String, u16),
}

/// Why an `egress.allow` entry is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadEntry(String);

fn bad(reason: impl Into<String>) -> BadEntry {
    BadEntry(reason.into())
}

impl std::str::FromStr for AllowEntry {
    type Err = BadEntry;

    fn from_str(raw: &str) -> Result<Self, BadEntry> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(bad("is empty"));
        }
        if s.contains("://") {
            return Err(bad("is a URL; give a host, host:port or CIDR network"));
        }
        if s.contains('*') {
            return Err(bad("wildcards are not supported; list each host"));
        }
        if s.contains('/') {
            let net: IpNet = s
                .parse()
                .map_err(|_| bad("is not a CIDR network (like 10.1.0.0/16)"))?;
            if net.trunc() != net {
                return Err(bad(format!(
                    "has host bits set; the network is {}",
                    net.trunc()
                )));
            }
            return Ok(AllowEntry::Net(net));
        }
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(AllowEntry::Net(IpNet::from(canonical(ip))));
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return socket(canonical(sa.ip()), sa.port());
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (s, None),
        };
        // The URL host parser, so an entry means what the same text means in a URL
        // (`127.1` is 127.0.0.1, names are lowercased and IDNA-encoded).
        let parsed = Host::parse(host).map_err(|e| bad(format!("is not a host: {e}")))?;
        match (parsed, port) {
            (Host::Ipv4(ip), Some(p)) => socket(IpAddr::V4(ip), p),
            (Host::Ipv6(ip), Some(p)) => socket(canonical(IpAddr::V6(ip)), p),
            (Host::Ipv4(ip), None) => Ok(AllowEntry::Net(IpNet::from(IpAddr::V4(ip)))),
            (Host::Ipv6(ip), None) => Ok(AllowEntry::Net(IpNet::from(canonical(ip.into())))),
            (Host::Domain(d), port) => {
                let name = normal(&d);
                let ok = name.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
                });
                if !ok {
                    return Err(bad("is not a host name"));
                }
                Ok(match port {
                    Some(p) => AllowEntry::NamePort(name, p),
                    None => AllowEntry::Name(name),
                })
            }
        }
    }
}

fn parse_port(p: &str) -> Result<u16, BadEntry> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("has a port that is not 1–65535"))
}

fn socket(ip: IpAddr, port: u16) -> Result<AllowEntry, BadEntry> {
    if port == 0 {
        return Err(bad("has a port that is not 1–65535"));
    }
    Ok(AllowEntry::Socket(SocketAddr::new(ip, port)))
}

impl std::fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowEntry::Net(n) if n.prefix_len() == n.max_prefix_len() => n.addr().fmt(f),
            AllowEntry::Net(n) => n.fmt(f),
            AllowEntry::Socket(sa) => sa.fmt(f),
            AllowEntry::Name(name) => f.write_str(name),
            AllowEntry::NamePort(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

impl serde::Serialize for AllowEntry {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

/// An egress refusal: permanent for the download or webhook it stopped, and worded for
/// the operator who can lift it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("egress policy refused {target} ({class}); allow it with egress.allow")]
    Address {
        target: SocketAddr,
        class: AddressClass,
    },
    #[error(
        "egress policy refused {name} (resolves to {addr}, {class}); allow it with egress.allow"
    )]
    Resolved {
        name: String,
        addr: IpAddr,
        class: AddressClass,
    },
    #[error("egress policy refused {name}:{port} (that name is allowed only on port {allowed}); allow it with egress.allow")]
    Port {
        name: String,
        port: u16,
        allowed: String,
    },
    #[error("egress policy refused scheme {0} (https only unless output.allow_http)")]
    Scheme(String),
    #[error("egress policy refused a URL without a host")]
    NoHost,
    #[error("egress policy refused an unparseable URL ({0})")]
    BadUrl(String),
    #[error("egress policy refused more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error(
        "egress policy refused a redirect from {from} to {to}: the same host and port under \
         another scheme (a credential would follow it)"
    )]
    SchemeSwitch { from: String, to: String },
    #[error("{refused} (on redirect hop {hop})")]
    OnRedirect { hop: usize, refused: Box<Refused> },
}

/// Where outputs and webhooks may go: public addresses, and the exceptions — each
/// provider's `base_url` origin (host and port) and the `egress.allow` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow_http: bool,
    nets: Vec<IpNet>,
    sockets: Vec<SocketAddr>,
    names: Vec<String>,
    name_ports: Vec<(String, u16)>,
}

impl Policy {
    /// The policy of these allow entries and provider base URLs (their origins are
    /// allowed); plain http only with `allow_http`.
    pub fn new<'a>(
        allow: &[AllowEntry],
        origins: impl IntoIterator<Item = &'a Url>,
        allow_http: bool,
    ) -> Self {
        let mut p = Policy {
            allow_http,
            ..Policy::default()
        };
        for e in allow {
            match e {
                AllowEntry::Net(n) => p.nets.push(*n),
                AllowEntry::Socket(sa) => p.sockets.push(*sa),
                AllowEntry::Name(n) => p.names.push(n.clone()),
                AllowEntry::NamePort(n, port) => p.name_ports.push((n.clone(), *port)),
            }
        }
        for url in origins {
            let Some(port) = url.port_or_known_default() else {
                continue;
            };
            match url.host() {
                Some(Host::Ipv4(ip)) => p.sockets.push(SocketAddr::new(ip.into(), port)),
                Some(Host::Ipv6(ip)) => p.sockets.push(SocketAddr::new(canonical(ip.into()), port)),
                Some(Host::Domain(d)) => p.name_ports.push((normal(d), port)),
                None => {}
            }
        }
        p
    }

    /// The policy the settings describe.
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        let origins = s.providers.values().map(|p| &p.base_url);
        Policy::new(&s.egress.allow, origins, s.output.allow_http)
    }

    /// Checks a URL before it is requested (the first request and every redirect hop):
    /// its scheme, and its host — an IP literal fully (no resolver sees it), a name as far
    /// as its port; what a name resolves to is [`Policy::check_resolved`]'s.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(Refused::Scheme(shown(other))),
        }
        let port = url.port_or_known_default().ok_or(Refused::NoHost)?;
        match url.host() {
            None => Err(Refused::NoHost),
            Some(Host::Ipv4(ip)) => self.check_ip(ip.into(), port),
            Some(Host::Ipv6(ip)) => self.check_ip(ip.into(), port),
            Some(Host::Domain(d)) => self.check_name(d, port),
        }
    }

    /// An address connected to directly (an IP literal): allowed when public, in an
    /// allowed network, or an allowed address and port.
    pub fn check_ip(&self, ip: IpAddr, port: u16) -> Result<(), Refused> {
        let ip = canonical(ip);
        let target = SocketAddr::new(ip, port);
        if self.nets.iter().any(|n| n.contains(&ip)) || self.sockets.contains(&target) {
            return Ok(());
        }
        match classify(ip) {
            Some(class) => Err(Refused::Address { target, class }),
            None => Ok(()),
        }
    }

    /// A name and port, before resolution. A name that is allowed only on some ports
    /// (a provider's origin, a `host:port` entry) is refused on the others: the resolver
    /// that judges its addresses never learns the port.
    fn check_name(&self, name: &str, port: u16) -> Result<(), Refused> {
        let name = normal(name);
        if self.names.contains(&name) {
            return Ok(());
        }
        let ports: Vec<u16> = self
            .name_ports
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .collect();
        if ports.is_empty() || ports.contains(&port) {
            return Ok(());
        }
        let allowed: Vec<String> = ports.iter().map(u16::to_string).collect();
        Err(Refused::Port {
            name: shown(&name),
            port,
            allowed: allowed.join(", "),
        })
    }

    /// An address a name resolved to: allowed when public, in an allowed network, or
    /// when the name itself is allowed (an entry or a provider's origin).
    pub fn check_resolved(&self, name: &str, addr: IpAddr) -> Result<(), Refused> {
        let name = normal(name);
        let addr = canonical(addr);
        let named = self.names.contains(&name) || self.name_ports.iter().any(|(n, _)| *n == name);
        if named || self.nets.iter().any(|n| n.contains(&addr)) {
            return Ok(());
        }
        match classify(addr) {
            Some(class) => Err(Refused::Resolved {
                name: shown(&name),
                addr,
                class,
            }),
            None => Ok(()),
        }
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A host name as compared: lowercase, without the root's trailing dot.
fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Text from an upstream answer, cut to what a refusal needs to show.
fn shown(s: &str) -> String {
    const MAX: usize = 253;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
