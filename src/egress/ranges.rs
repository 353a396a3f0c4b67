//! Which addresses are not the public internet: one table of networks (parsed with
//! `ipnet`), each with the class a refusal names. IPv6 forms that carry an IPv4 address
//! (mapped, compatible, translated, NAT64, 6to4) are judged by the address they carry.

use ipnet::{IpNet, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

/// Why an address is not on the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    Unspecified,
    LinkLocal,
    Private,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedCgnat,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
    /// A cloud provider's instance metadata service (credentials live there).
    Metadata,
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Unspecified => "unspecified",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Private => "private",
            AddressClass::SharedCgnat => "shared address space (CGNAT)",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Reserved => "reserved",
            AddressClass::Metadata => "cloud metadata",
        })
    }
}

use AddressClass::*;

/// Denied networks, first match wins (so the metadata addresses come before the
/// link-local and unique-local networks that hold them).
const DENIED: &[(&str, AddressClass)] = &[
    // Cloud metadata: AWS, GCP, Azure, OpenStack (IPv4 and IPv6), Alibaba.
    ("169.254.169.254/32", Metadata),
    ("fd00:ec2::254/128", Metadata),
    ("100.100.100.200/32", Metadata),
    ("0.0.0.0/8", Unspecified),
    ("10.0.0.0/8", Private),
    ("100.64.0.0/10", SharedCgnat),
    ("127.0.0.0/8", Loopback),
    ("169.254.0.0/16", LinkLocal),
    ("172.16.0.0/12", Private),
    ("192.0.0.0/24", Reserved),
    ("192.0.2.0/24", Documentation),
    ("192.88.99.0/24", Reserved),
    ("192.168.0.0/16", Private),
    ("198.18.0.0/15", Reserved),
    ("198.51.100.0/24", Documentation),
    ("203.0.113.0/24", Documentation),
    ("224.0.0.0/4", Multicast),
    ("255.255.255.255/32", Broadcast),
    ("240.0.0.0/4", Reserved),
    ("::/128", Unspecified),
    ("::1/128", Loopback),
    // IPv4-compatible addresses (deprecated) whose IPv4 part is public.
    ("::/96", Reserved),
    ("64:ff9b:1::/48", Reserved),
    ("100::/64", Reserved),
    ("2001:db8::/32", Documentation),
    ("3fff::/20", Documentation),
    ("fc00::/7", Private),
    ("fe80::/10", LinkLocal),
    // Site-local, deprecated: private in practice.
    ("fec0::/10", Private),
    ("ff00::/8", Multicast),
];

static TABLE: LazyLock<Vec<(IpNet, AddressClass)>> = LazyLock::new(|| {
    let parse = |(net, class): &(&str, AddressClass)| {
        (net.parse::<IpNet>().expect("a valid network"), *class)
    };
    DENIED.iter().map(parse).collect()
});

/// IPv6 networks that carry an IPv4 address, and which 4 octets hold it.
const EMBEDDING: &[(&str, usize)] = &[
    // IPv4-compatible (the unspecified and loopback addresses are judged as IPv6).
    ("::/96", 12),
    // IPv4-translated (SIIT).
    ("::ffff:0:0:0/96", 12),
    // NAT64, the well-known prefix.
    ("64:ff9b::/96", 12),
    // 6to4: the relay's IPv4 address follows the prefix.
    ("2002::/16", 2),
];

static EMBEDDINGS: LazyLock<Vec<(Ipv6Net, usize)>> = LazyLock::new(|| {
    let parse = |(net, at): &(&str, usize)| (net.parse::<Ipv6Net>().expect("a valid network"), *at);
    EMBEDDING.iter().map(parse).collect()
});

/// The IPv4 address an IPv6 address carries, if it is of a form that carries one.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if v6.is_unspecified() || v6.is_loopback() {
        return None;
    }
    let (_, at) = EMBEDDINGS.iter().find(|(net, _)| net.contains(&v6))?;
    let o = v6.octets();
    Some(Ipv4Addr::new(o[*at], o[at + 1], o[at + 2], o[at + 3]))
}

/// The class of a non-public address; `None` for a public one. IPv4-mapped IPv6
/// addresses are judged as the IPv4 address, and so are the other forms carrying one
/// whose IPv4 address is denied.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    let ip = ip.to_canonical();
    if let IpAddr::V6(v6) = ip {
        if let Some(class) = embedded_v4(v6).and_then(|v4| classify(IpAddr::V4(v4))) {
            return Some(class);
        }
    }
    TABLE
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, class)| *class)
}
