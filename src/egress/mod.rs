//! The egress policy: where output downloads and webhooks may connect. A provider's
//! answer names the output URL, and a producer names the webhook, so neither may reach
//! what only the worker can: loopback, link-local, private, CGNAT, multicast, reserved
//! and documentation addresses and cloud metadata services are refused (IPv4-mapped and
//! other IPv6 forms carrying such an IPv4 address too), unless the address is a
//! provider's own `base_url` origin (host and port) or an `egress.allow` entry (a host,
//! a host and port, or a CIDR network). Plain http only with `output.allow_http`.
//!
//! The rule holds where the connection is decided: every redirect hop's URL is checked
//! (reqwest's custom redirect policy), every name's resolved addresses are checked (a
//! custom DNS resolver, so a name that resolves to loopback is refused after DNS), and
//! IP-literal URLs, which reach no resolver, are checked before the first request and on
//! each hop. A refusal is a [`Refused`]: permanent and worded for the operator.
//!
//! - `ranges`: the address classes, one table of networks.
//! - `policy`: the `egress.allow` entries, the [`Policy`] and its decisions (pure).
//! - `client`: [`Egress`], the reqwest client with the resolver and redirect policy.

mod client;
mod policy;
mod ranges;

pub use client::{explain, refusal, Egress};
pub use policy::{AllowEntry, BadEntry, Policy, Refused, MAX_REDIRECTS};
pub use ranges::{classify, AddressClass};

#[cfg(test)]
mod tests;
