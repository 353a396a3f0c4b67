//! The HTTP client that enforces the policy where reqwest decides where to connect: a
//! DNS resolver that keeps only the addresses the policy allows for the name, and a
//! redirect policy that checks every hop's URL. IP-literal URLs never reach a resolver,
//! so [`Egress::get`] and [`Egress::post`] check the first URL and the redirect policy
//! every later one.
//!
//! Credentials on a request (a provider's key on an output download) never reach another
//! origin: reqwest drops `Authorization`, `Cookie` and `Proxy-Authorization` on a
//! redirect to another host or port (`reqwest::redirect`, `remove_sensitive_headers`),
//! and the one change of origin it keeps them on, the same host and port under another
//! scheme, is refused here ([`switches_scheme`]).

use super::policy::{Policy, Refused, MAX_REDIRECTS};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The policy-enforcing client for output downloads and webhooks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Egress {
    http: reqwest::Client,
    policy: Arc<Policy>,
}

impl Egress {
    /// A client for `policy` whose connections (DNS, TCP and TLS) give up after
    /// `connect_timeout`. No proxy: the resolver must see the real destination.
    pub fn new(policy: Policy, connect_timeout: Duration) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let hops = policy.clone();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds the first URL too: the first redirect is hop 1.
            let hop = attempt.previous().len();
            if hop > MAX_REDIRECTS {
                return attempt.error(Refused::TooManyRedirects);
            }
            if let Some(from) = attempt.previous().last() {
                if switches_scheme(from, attempt.url()) {
                    let refused = Refused::SchemeSwitch {
                        from: from.origin().ascii_serialization(),
                        to: attempt.url().origin().ascii_serialization(),
                    };
                    return attempt.error(Refused::OnRedirect {
                        hop,
                        refused: Box::new(refused),
                    });
                }
            }
            match hops.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(Refused::OnRedirect {
                    hop,
                    refused: Box::new(refused),
                }),
            }
        });
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(redirect)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .no_proxy()
            .build()?;
        Ok(Egress { http, policy })
    }

    /// The client the settings describe (`egress.allow`, the providers' origins,
    /// `output.allow_http`, `output.connect_timeout`).
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        Egress::new(Policy::from_settings(s), s.output.connect_timeout)
            .expect("the egress client builds")
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A GET of `url`, once the policy allows the URL itself.
    pub fn get(&self, url: &Url) -> Result<reqwest::RequestBuilder, Refused> {
        self.policy.check_url(url)?;
        Ok(self.http.get(url.clone()))
    }

    /// A POST to `url` (a webhook), once the policy allows the URL itself.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        let url = Url::parse(url).map_err(|e| Refused::BadUrl(e.to_string()))?;
        self.policy.check_url(&url)?;
        Ok(self.http.post(url))
    }
}

/// Whether a redirect from `from` to `to` keeps the host and port but changes the scheme:
/// the change of origin on which reqwest keeps sensitive headers (it compares host and
/// port only).
pub(super) fn switches_scheme(from: &Url, to: &Url) -> bool {
    from.scheme() != to.scheme()
        && from.host_str() == to.host_str()
        && from.port_or_known_default() == to.port_or_known_default()
}

/// The refusal behind a request error, if the policy caused it (on a redirect hop or
/// after DNS resolution), looking through the whole chain of sources.
pub fn refusal<'e>(e: &'e (dyn StdError + 'static)) -> Option<&'e Refused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        // `io::Error::source` skips the error it wraps: look inside it.
        let wrapped = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>());
        if wrapped.is_some() {
            return wrapped;
        }
        cur = err.source();
    }
    None
}

/// A request error in words, without its URL (it may carry a signed query): the
/// refusal when the policy caused it, otherwise the error and its causes.
pub fn explain(e: reqwest::Error) -> String {
    if let Some(r) = refusal(&e) {
        return r.to_string();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        cur = cause.source();
    }
    text
}

/// Resolves with the system resolver, then keeps only the addresses the policy allows
/// for the name; none left is the refusal of the first one dropped.
#[derive(Debug)]
struct PolicyResolver {
    policy: Arc<Policy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .filter(|a| match policy.check_resolved(&host, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            match refused {
                Some(r) if kept.is_empty() => Err(Box::new(r) as _),
                _ => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}
