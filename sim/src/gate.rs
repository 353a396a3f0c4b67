//! The request gate every protocol's API requests pass, in one order:
//!
//! 1. the caller's credential (401),
//! 2. the key's token bucket (429, the `rate_limit` knobs),
//! 3. an injected fault (429, 5xx, or no credits, by the knobs of a submit or a poll),
//! 4. the protocol's validation of the request (400/404/422),
//!
//! and only then the protocol's own handling. Each refusal is counted in all and under the
//! protocol (a 403 in all only), and every request past the credential check goes into
//! the request log with the status it was answered. The protocols keep their wire
//! formats: the gate asks them (through [`Protocol`]) how a credential is read and how
//! each refusal is written.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use std::time::{Instant, SystemTime};

use crate::limits::RequestKind;
use crate::state::{Inner, Knobs, SimState};

/// What the gate needs to know of a provider protocol.
pub(crate) trait Protocol {
    /// Its name in the per-provider counters.
    const NAME: &'static str;
    /// The statuses an injected poll 5xx is drawn from (an injected submit 5xx is a 503).
    const POLL_5XX: &'static [StatusCode];
    /// Why a credential was refused.
    type Denied;

    /// The caller's key (for Kling the token's access key), given the `api_keys` knob.
    fn authenticate(api_keys: &[String], headers: &HeaderMap) -> Result<String, Self::Denied>;

    /// The answer to a refused credential (a 401).
    fn unauthorized(denied: Self::Denied) -> Response;

    /// The answer to a request refused by a limit or a fault. Also used by the protocols
    /// for the same refusals after the gate (a concurrency cap, a lost response).
    fn refuse(fault: Fault) -> Response;
}

/// Why the gate refuses a request whose credential it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Too many requests: the key's token bucket is empty, or an injected 429.
    TooManyRequests { retry_after: Option<u64> },
    /// A server error: injected, or a response lost after the work was done.
    Server(StatusCode),
    /// The account has run out of credits (the `no_credits` knob).
    NoCredits { retry_after: Option<u64> },
}

/// Which of the gate's checks a kind of request goes through, and how it is counted and
/// logged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    /// How the request log lists it.
    kind: RequestKind,
    /// What it is counted as once its credential is accepted.
    tally: Tally,
    /// Whether the key's token bucket applies.
    metered: bool,
    /// Which knobs inject faults.
    faults: Faults,
}

#[derive(Debug, Clone, Copy)]
enum Tally {
    Nothing,
    /// A status poll (`polls_total`, in all and under the provider).
    Poll,
    /// A result fetch (the provider's `results_total`).
    Result,
    /// A cancel (the provider's `cancels_total`).
    Cancel,
}

#[derive(Debug, Clone, Copy)]
enum Faults {
    None,
    /// `submit_429_rate`, `submit_5xx_rate` and, with `no_credits`, the `no_credits` knob.
    Submit {
        no_credits: bool,
    },
    /// `poll_429_rate` and `poll_5xx_rate`.
    Poll,
}

impl Call {
    /// A submit (create): the submit fault knobs, `no_credits` included.
    pub(crate) const SUBMIT: Call = Call {
        kind: RequestKind::Submit,
        tally: Tally::Nothing,
        metered: true,
        faults: Faults::Submit { no_credits: true },
    };
    /// A submit whose credit check is the protocol's own, after the body (Oxen's enqueue).
    pub(crate) const SUBMIT_CREDITS_LATER: Call = Call {
        faults: Faults::Submit { no_credits: false },
        ..Call::SUBMIT
    };
    /// A status poll: the poll fault knobs.
    pub(crate) const POLL: Call = Call {
        kind: RequestKind::Poll,
        tally: Tally::Poll,
        metered: true,
        faults: Faults::Poll,
    };
    /// A result fetch (fal): the poll fault knobs; logged as a poll.
    pub(crate) const RESULT: Call = Call {
        tally: Tally::Result,
        ..Call::POLL
    };
    /// A cancel (fal): metered, no injected faults; logged as a poll.
    pub(crate) const CANCEL: Call = Call {
        tally: Tally::Cancel,
        faults: Faults::None,
        ..Call::POLL
    };

    /// The same call without the per-key token bucket (Kling's queries have no QPS limit).
    pub(crate) const fn unmetered(self) -> Call {
        Call {
            metered: false,
            ..self
        }
    }
}

/// Passes a request through the gate: its credential, the key's token bucket, an injected
/// fault, then `validate` (run outside the lock: a body may carry a large data URI), whose
/// refusal is the protocol's answer to an invalid request. What passes goes to `handle`
/// with the caller's key. Every answer but a 401 is logged.
pub(crate) fn serve<P: Protocol, T>(
    state: &SimState,
    headers: &HeaderMap,
    call: Call,
    validate: impl FnOnce() -> Result<T, Box<Response>>,
    handle: impl FnOnce(&str, T) -> Response,
) -> Response {
    serve_tagged::<P, T>(state, headers, call, Tag::default(), validate, |k, v, _| {
        handle(k, v)
    })
}

/// What a logged request says beyond its kind: the submit's path (fal's endpoint names
/// the tier) and the mode a Kling create asked for.
#[derive(Debug, Default)]
pub(crate) struct Tag {
    pub path: Option<String>,
    pub mode: Option<String>,
}

/// [`serve`], logging `tag` with the request; `handle` may add to it.
pub(crate) fn serve_tagged<P: Protocol, T>(
    state: &SimState,
    headers: &HeaderMap,
    call: Call,
    mut tag: Tag,
    validate: impl FnOnce() -> Result<T, Box<Response>>,
    handle: impl FnOnce(&str, T, &mut Tag) -> Response,
) -> Response {
    let arrival = SystemTime::now();
    let key = match authenticate::<P>(state, headers) {
        Ok(key) => key,
        Err(resp) => return *resp,
    };
    let resp = match admit::<P, T>(state, &key, call, validate) {
        Ok(valid) => handle(&key, valid, &mut tag),
        Err(resp) => *resp,
    };
    state.record_request(arrival, call.kind, resp.status().as_u16(), tag);
    resp
}

/// The gate's first step alone, for requests nothing else applies to (Oxen's cancel, list
/// and event stream): the caller's key, or the 401 answer (counted, not logged).
pub(crate) fn authenticate<P: Protocol>(
    state: &SimState,
    headers: &HeaderMap,
) -> Result<String, Box<Response>> {
    // Outside the lock: checking a credential may mean verifying a signature.
    let api_keys = state.lock().knobs.api_keys.clone();
    P::authenticate(&api_keys, headers).map_err(|denied| {
        state.lock().count_unauthorized(P::NAME);
        Box::new(P::unauthorized(denied))
    })
}

/// Steps 2–4 for an authenticated request.
fn admit<P: Protocol, T>(
    state: &SimState,
    key: &str,
    call: Call,
    validate: impl FnOnce() -> Result<T, Box<Response>>,
) -> Result<T, Box<Response>> {
    {
        let mut guard = state.lock();
        let inner = &mut *guard;
        call.tally.count(inner, P::NAME);
        if let Some(fault) = fault(inner, key, call, P::POLL_5XX) {
            let resp = P::refuse(fault);
            inner.count_refused(P::NAME, resp.status());
            return Err(Box::new(resp));
        }
    }
    validate().inspect_err(|_| state.lock().count_invalid(P::NAME))
}

/// The key's token bucket, then the injected faults, in the order their knobs draw.
fn fault(inner: &mut Inner, key: &str, call: Call, poll_5xx: &[StatusCode]) -> Option<Fault> {
    let retry_after = inner.knobs.retry_after_secs;
    if call.metered && !inner.limits.take_token(key, Instant::now(), &inner.knobs) {
        tracing::debug!("sim: request over the per-key rate limit");
        return Some(Fault::TooManyRequests { retry_after });
    }
    let Knobs {
        submit_429_rate,
        submit_5xx_rate,
        poll_429_rate,
        poll_5xx_rate,
        no_credits,
        ..
    } = inner.knobs;
    let (p429, p5xx) = match call.faults {
        Faults::None => return None,
        Faults::Submit { .. } => (submit_429_rate, submit_5xx_rate),
        Faults::Poll => (poll_429_rate, poll_5xx_rate),
    };
    if inner.chance(p429) {
        return Some(Fault::TooManyRequests { retry_after });
    }
    if inner.chance(p5xx) {
        let status = match call.faults {
            Faults::Poll => poll_5xx[inner.pick(poll_5xx.len())],
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        return Some(Fault::Server(status));
    }
    let broke = matches!(call.faults, Faults::Submit { no_credits: true }) && no_credits;
    broke.then_some(Fault::NoCredits { retry_after })
}

impl Tally {
    fn count(self, inner: &mut Inner, provider: &str) {
        match self {
            Tally::Nothing => {}
            Tally::Poll => {
                inner.stats.polls_total += 1;
                inner.counters(provider).polls_total += 1;
            }
            Tally::Result => inner.counters(provider).results_total += 1,
            Tally::Cancel => inner.counters(provider).cancels_total += 1,
        }
    }
}

/// The credential of an `Authorization: <scheme> <credential>` header (scheme matched
/// case-insensitively), when present and not blank.
pub(crate) fn credential<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(s, _)| s.eq_ignore_ascii_case(scheme))
        .map(|(_, credential)| credential.trim())
        .filter(|credential| !credential.is_empty())
}

/// A plain API key (aimlapi, Oxen, fal) when accepted: with no `api_keys` any key is.
pub(crate) fn plain_key(api_keys: &[String], key: &str) -> Option<String> {
    (api_keys.is_empty() || api_keys.iter().any(|k| k == key)).then(|| key.to_owned())
}

/// Sets `Retry-After` to `secs`, when given.
pub(crate) fn retry_after(mut resp: Response, secs: Option<u64>) -> Response {
    if let Some(secs) = secs {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod unit {
    use super::*;
    use axum::response::IntoResponse;

    /// A protocol that answers every refusal with its bare status.
    struct Toy;

    impl Protocol for Toy {
        const NAME: &'static str = "toy";
        const POLL_5XX: &'static [StatusCode] = &[StatusCode::BAD_GATEWAY];
        type Denied = ();

        fn authenticate(api_keys: &[String], headers: &HeaderMap) -> Result<String, ()> {
            plain_key(api_keys, credential(headers, "bearer").ok_or(())?).ok_or(())
        }

        fn unauthorized((): ()) -> Response {
            StatusCode::UNAUTHORIZED.into_response()
        }

        fn refuse(fault: Fault) -> Response {
            match fault {
                Fault::TooManyRequests { retry_after: secs } => {
                    retry_after(StatusCode::TOO_MANY_REQUESTS.into_response(), secs)
                }
                Fault::Server(status) => status.into_response(),
                Fault::NoCredits { .. } => StatusCode::FORBIDDEN.into_response(),
            }
        }
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = HeaderValue::from_str(&format!("Bearer {key}")).unwrap();
        h.insert(header::AUTHORIZATION, v);
        h
    }

    /// Serves `call` for `key`; the request is valid unless `invalid`. Returns the status
    /// and whether the protocol's validation ran.
    fn run(state: &SimState, key: &str, call: Call, invalid: bool) -> (u16, bool) {
        let mut validated = false;
        let resp = serve::<Toy, _>(
            state,
            &bearer(key),
            call,
            || {
                validated = true;
                if invalid {
                    Err(Box::new(StatusCode::BAD_REQUEST.into_response()))
                } else {
                    Ok(())
                }
            },
            |_, ()| StatusCode::OK.into_response(),
        );
        (resp.status().as_u16(), validated)
    }

    #[test]
    fn refusals_come_in_order_and_are_counted_by_status() {
        let base = Knobs {
            api_keys: vec!["k".into()],
            ..Knobs::default()
        };
        let state = SimState::new(Knobs {
            no_credits: true,
            submit_5xx_rate: 1.0,
            ..base.clone()
        });
        // The credential first: nothing else runs, nothing is logged.
        assert_eq!(run(&state, "other", Call::SUBMIT, true), (401, false));
        // An injected 5xx before the credit check; both before validation.
        assert_eq!(run(&state, "k", Call::SUBMIT, true), (503, false));
        state.set_knobs(Knobs {
            no_credits: true,
            ..base.clone()
        });
        assert_eq!(run(&state, "k", Call::SUBMIT, true), (403, false));
        // A protocol that checks credits itself reaches validation.
        assert_eq!(
            run(&state, "k", Call::SUBMIT_CREDITS_LATER, true),
            (400, true)
        );
        // The token bucket before everything but the credential.
        state.set_knobs(Knobs {
            rate_limit: Some(0.001),
            rate_burst: Some(1),
            poll_5xx_rate: 1.0,
            ..base.clone()
        });
        assert_eq!(run(&state, "k", Call::CANCEL, false), (200, true));
        assert_eq!(run(&state, "k", Call::POLL, false), (429, false));
        // Unmetered: the bucket does not apply, the poll faults do.
        assert_eq!(
            run(&state, "k", Call::POLL.unmetered(), false),
            (502, false)
        );
        state.set_knobs(base);
        assert_eq!(run(&state, "k", Call::RESULT, false), (200, true));

        let stats = state.stats();
        assert_eq!(stats.unauthorized_total, 1);
        assert_eq!(stats.server_errors_total, 2);
        assert_eq!(stats.forbidden_total, 1);
        assert_eq!(stats.validation_errors_total, 1);
        assert_eq!(stats.rate_limited_total, 1);
        assert_eq!(stats.polls_total, 2);
        let toy = &stats.by_provider["toy"];
        assert_eq!((toy.unauthorized_total, toy.server_errors_total), (1, 2));
        assert_eq!(
            (toy.validation_errors_total, toy.rate_limited_total),
            (1, 1)
        );
        assert_eq!(
            (toy.polls_total, toy.results_total, toy.cancels_total),
            (2, 1, 1)
        );
        let logged: Vec<(RequestKind, u16)> = state
            .requests()
            .iter()
            .map(|e| (e.kind, e.status))
            .collect();
        use RequestKind::{Poll, Submit};
        assert_eq!(
            logged,
            [
                (Submit, 503),
                (Submit, 403),
                (Submit, 400),
                (Poll, 200),
                (Poll, 429),
                (Poll, 502),
                (Poll, 200),
            ]
        );
    }
}
