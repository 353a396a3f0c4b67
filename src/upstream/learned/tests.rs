//! Many simulated jobs against known latency distributions, without clocks: the default
//! schedule (`schedule::poll_delay`) against the learned one, warm-up on the default
//! included, each job's completion recorded into the ring as a worker records it.

use super::*;
use crate::config::PollSettings;
use crate::upstream::schedule::poll_delay;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

const DEADLINE: f64 = 1000.0;
const MIN_SAMPLES: usize = 32;

fn default_poll() -> PollSettings {
    PollSettings {
        first_delay: Duration::from_secs(15),
        max_interval: Duration::from_secs(60),
        deadline: Duration::from_secs(1000),
    }
}

fn bounds() -> Bounds {
    Bounds {
        min_gap: min_gap(0.0, true, 1, 15.0 / 8.0),
        max_gap: 60.0,
    }
}

/// What a run measured: polls per detected job and detection delays, seconds.
#[derive(Debug)]
struct Run {
    polls: Vec<f64>,
    delays: Vec<f64>,
    timed_out: usize,
}

fn pct(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

impl Run {
    fn mean_polls(&self) -> f64 {
        self.polls.iter().sum::<f64>() / self.polls.len() as f64
    }
    fn median(&self) -> f64 {
        pct(&self.delays, 0.5)
    }
    fn p90(&self) -> f64 {
        pct(&self.delays, 0.9)
    }
    /// The same figures for the jobs from `from` on (after a warm-up).
    fn from(&self, from: usize) -> Run {
        Run {
            polls: self.polls[from..].to_vec(),
            delays: self.delays[from..].to_vec(),
            timed_out: 0,
        }
    }
}

/// Runs one job whose generation takes `t_done`: `wait(elapsed, polls, draw)` gives each
/// wait. Returns (polls, detection delay, last pending poll) or `None` when timed out.
fn job(
    t_done: f64,
    rng: &mut StdRng,
    mut wait: impl FnMut(f64, u32, f64) -> Duration,
) -> Option<(u32, f64, f64)> {
    let (mut t, mut polls, mut last_pending) = (0.0, 0u32, 0.0);
    loop {
        let w = wait(t, polls, rng.random()).as_secs_f64();
        assert!(w.is_finite() && w > 0.0, "a wait of {w} s at {t} s");
        let at = (t + w).min(DEADLINE);
        polls += 1;
        if at >= t_done {
            return Some((polls, at - t_done, last_pending));
        }
        if at >= DEADLINE {
            return None;
        }
        last_pending = at;
        t = at;
    }
}

fn default_run(latencies: &[f64], seed: u64) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = Run {
        polls: vec![],
        delays: vec![],
        timed_out: 0,
    };
    let p = default_poll();
    for &l in latencies {
        match job(l, &mut rng, |_, n, r| poll_delay(&p, n, r)) {
            Some((polls, delay, _)) => {
                run.polls.push(f64::from(polls));
                run.delays.push(delay);
            }
            None => run.timed_out += 1,
        }
    }
    run
}

/// Jobs in flight at once: a job's sample reaches the ring only after this many later
/// jobs have started (they were submitted before it completed).
const IN_FLIGHT: usize = 32;

/// The learned schedule with the default before `MIN_SAMPLES` completions; each job's
/// sample enters the ring (newest first, capped) `IN_FLIGHT` jobs after it started.
fn learned_run(latencies: &[f64], seed: u64) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ring: VecDeque<Sample> = VecDeque::new();
    let mut landing: VecDeque<Sample> = VecDeque::new();
    let mut run = Run {
        polls: vec![],
        delays: vec![],
        timed_out: 0,
    };
    let p = default_poll();
    for &l in latencies {
        let d = Dist::new(ring.iter().copied());
        let learned = d.len() >= MIN_SAMPLES;
        let res = job(l, &mut rng, |t, n, r| {
            if learned {
                next_wait(&d, t, &bounds(), r)
            } else {
                poll_delay(&p, n, r)
            }
        });
        match res {
            Some((polls, delay, last_pending)) => {
                run.polls.push(f64::from(polls));
                run.delays.push(delay);
                let s = Sample {
                    lo_ms: (last_pending * 1000.0) as u64,
                    hi_ms: ((l + delay) * 1000.0) as u64,
                };
                landing.push_back(s);
                if landing.len() > IN_FLIGHT {
                    ring.push_front(landing.pop_front().expect("landing"));
                    ring.truncate(MAX_SAMPLES);
                }
            }
            None => run.timed_out += 1,
        }
    }
    run
}

fn uniform(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Lognormal with this median and sigma (Box–Muller).
fn lognormal(n: usize, median: f64, sigma: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            median * (sigma * z).exp()
        })
        .collect()
}

fn report(name: &str, r: &Run) -> String {
    format!(
        "{name}: polls {:.2} mean p90 {:.0}, delay median {:.2} s p90 {:.2} s, {} timed out",
        r.mean_polls(),
        pct(&r.polls, 0.9),
        r.median(),
        r.p90(),
        r.timed_out
    )
}

#[test]
fn samples_round_trip_and_garbage_is_refused() {
    let s = Sample {
        lo_ms: 200_000,
        hi_ms: 203_500,
    };
    assert_eq!(Sample::decode(s.encode().as_bytes()), Some(s));
    for bad in [
        &b"nan:1"[..],
        b"-1:5",
        b"5:4",
        b"1:99999999999999999999999",
        b"1:604800001",
        b"",
        b":",
        b"1",
        b"\xff\xfe:1",
        b"1 :2",
        b"+1:2",
        &[b'1'; 64],
    ] {
        assert_eq!(
            Sample::decode(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn a_distribution_takes_at_most_the_ring_and_is_sane() {
    let many = (0..10_000u64).map(|i| Sample {
        lo_ms: i,
        hi_ms: i + 1,
    });
    let d = Dist::new(many);
    assert_eq!(d.len(), MAX_SAMPLES);
    assert!((d.cdf(0.128) - 0.5).abs() < 0.01);
    assert_eq!(Dist::new([]).cdf(5.0), 0.0);
    // A point mass still gives finite, positive waits.
    let point = Dist::new([Sample {
        lo_ms: 10_000,
        hi_ms: 10_000,
    }]);
    let w = next_wait(&point, 0.0, &bounds(), 0.5);
    assert!(w >= Duration::from_secs(10), "{w:?}");
    let w = next_wait(&point, 10.5, &bounds(), 0.5);
    assert!(w > Duration::ZERO && w <= Duration::from_secs(60), "{w:?}");
}

#[test]
fn the_rate_budget_floors_every_gap() {
    // 20 jobs in flight sharing 5 requests/s, 80 % of it for polls: one poll per 5 s each.
    assert_eq!(min_gap(5.0, true, 20, 1.0), 5.0);
    assert_eq!(min_gap(5.0, false, 20, 1.0), 1.0);
    assert_eq!(min_gap(0.0, true, 20, 1.0), 1.0);
    let d = Dist::new(uniform(256, 200.0, 240.0, 1).into_iter().map(|t| Sample {
        lo_ms: (t * 1000.0) as u64,
        hi_ms: (t * 1000.0) as u64 + 500,
    }));
    let b = Bounds {
        min_gap: 5.0,
        max_gap: 60.0,
    };
    for t in [0.0, 150.0, 200.0, 220.0, 239.0, 300.0] {
        for r in [0.0, 0.5, 1.0] {
            assert!(next_wait(&d, t, &b, r) >= Duration::from_secs(5), "at {t}");
        }
    }
}

#[test]
fn uniform_200_240_meets_the_target() {
    let lat = uniform(3000, 200.0, 240.0, 7);
    let def = default_run(&lat, 11);
    let run = learned_run(&lat, 11);
    let steady = run.from(MIN_SAMPLES + MAX_SAMPLES);
    eprintln!(
        "{}\n{}",
        report("default", &def),
        report("learned", &steady)
    );
    assert!(steady.mean_polls() <= 6.0, "{}", report("learned", &steady));
    assert!(steady.median() <= 3.0, "{}", report("learned", &steady));
    assert!(steady.p90() <= 8.0, "{}", report("learned", &steady));
    assert!(steady.mean_polls() < def.mean_polls());
}

#[test]
fn a_long_tailed_lognormal_is_no_worse_than_the_default() {
    let lat = lognormal(3000, 200.0, 0.5, 3);
    let def = default_run(&lat, 5);
    let run = learned_run(&lat, 5);
    eprintln!("{}\n{}", report("default", &def), report("learned", &run));
    assert!(
        run.mean_polls() <= def.mean_polls(),
        "{}",
        report("learned", &run)
    );
    assert!(run.median() <= def.median(), "{}", report("learned", &run));
    assert!(run.p90() <= def.p90(), "{}", report("learned", &run));
    assert!(run.timed_out <= def.timed_out);
    assert!(pct(&run.polls, 0.9) <= pct(&def.polls, 0.9));
}

#[test]
fn latency_doubling_mid_batch_is_no_worse_than_the_default() {
    let mut lat = uniform(1500, 200.0, 240.0, 9);
    lat.extend(uniform(1500, 400.0, 480.0, 10));
    let def = default_run(&lat, 13);
    let run = learned_run(&lat, 13);
    // The jobs right after the shift, while the ring still holds the old latency.
    let (dt, lt) = (
        Run {
            polls: def.polls[1500..1500 + MAX_SAMPLES].to_vec(),
            delays: def.delays[1500..1500 + MAX_SAMPLES].to_vec(),
            timed_out: 0,
        },
        Run {
            polls: run.polls[1500..1500 + MAX_SAMPLES].to_vec(),
            delays: run.delays[1500..1500 + MAX_SAMPLES].to_vec(),
            timed_out: 0,
        },
    );
    eprintln!(
        "{}\n{}\n{}\n{}",
        report("default", &def),
        report("learned", &run),
        report("default, transition", &dt),
        report("learned, transition", &lt)
    );
    assert!(
        run.mean_polls() <= def.mean_polls(),
        "{}",
        report("learned", &run)
    );
    assert!(run.median() <= def.median(), "{}", report("learned", &run));
    assert!(run.p90() <= def.p90(), "{}", report("learned", &run));
    for (l, d) in [(&run, &def), (&lt, &dt)] {
        assert!(
            pct(&l.polls, 0.9) <= pct(&d.polls, 0.9),
            "{}",
            report("learned", l)
        );
    }
    assert!(
        lt.mean_polls() <= dt.mean_polls(),
        "{}",
        report("learned", &lt)
    );
    assert!(lt.median() <= dt.median(), "{}", report("learned", &lt));
    assert!(lt.p90() <= dt.p90(), "{}", report("learned", &lt));
    // After the ring has turned over, the new latency is learned.
    let late = run.from(1500 + 2 * MAX_SAMPLES);
    assert!(
        late.mean_polls() <= 6.0,
        "{}",
        report("learned, late", &late)
    );
    assert!(late.median() <= 6.0, "{}", report("learned, late", &late));
}

#[test]
fn placement_does_not_depend_on_the_unit_of_time() {
    // A time-scaled simulator (or provider) gets the same schedule, scaled.
    let samples = |scale: f64| {
        lognormal(256, 200.0, 0.5, 21)
            .into_iter()
            .map(move |t| Sample {
                lo_ms: (t * scale * 1000.0) as u64,
                hi_ms: ((t + 3.0) * scale * 1000.0) as u64,
            })
    };
    let (d, scaled) = (Dist::new(samples(1.0)), Dist::new(samples(0.02)));
    let b = |s: f64| Bounds {
        min_gap: 1.875 * s,
        max_gap: 60.0 * s,
    };
    for t in [0.0, 90.0, 200.0, 400.0, 900.0] {
        for r in [0.0, 0.5, 1.0] {
            let full = next_wait(&d, t, &b(1.0), r).as_secs_f64();
            let small = next_wait(&scaled, t * 0.02, &b(0.02), r).as_secs_f64() / 0.02;
            assert!(
                (full - small).abs() <= 0.05 * full + 0.1,
                "at {t} s, draw {r}: {full} s vs {small} s scaled"
            );
        }
    }
}
