//! Where `watch` draws a [`Snapshot`]: indicatif bars on stderr when it runs on a
//! terminal (overall, one per non-empty state, one per busy provider), plain lines on
//! stdout every few seconds elsewhere.

use super::{plain_line, provider_line, Snapshot};
use crate::job::JobState;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Where progress goes: bars on a terminal, plain lines elsewhere.
#[derive(Debug)]
pub(super) enum View {
    Plain { next: Instant, every: Duration },
    Bars(Bars),
}

impl View {
    pub(super) fn update(&mut self, s: &Snapshot) {
        match self {
            View::Plain { next, every } => {
                if Instant::now() >= *next {
                    println!("{}", plain_line(s));
                    *next = Instant::now() + *every;
                }
            }
            View::Bars(b) => b.update(s),
        }
    }

    pub(super) fn finish(&mut self, s: &Snapshot) {
        if let View::Bars(b) = self {
            b.update(s);
            b.overall.set_message(format!("cost {}", s.cost));
            b.each(ProgressBar::finish);
        }
    }

    pub(super) fn abandon(&mut self) {
        if let View::Bars(b) = self {
            b.each(ProgressBar::abandon);
        }
    }
}

/// The bars, drawn on stderr: overall first, then states in [`JobState::ALL`] order, then providers.
#[derive(Debug)]
pub(super) struct Bars {
    mp: MultiProgress,
    overall: ProgressBar,
    states: BTreeMap<usize, ProgressBar>,
    providers: BTreeMap<String, ProgressBar>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("█▉▊▋▌▍▎▏ ")
}

/// The bar colour of a state.
fn colour(state: JobState) -> &'static str {
    match state {
        JobState::Succeeded => "green",
        s if s.is_failure() => "red",
        JobState::Cancelled => "magenta",
        JobState::Queued => "white",
        _ => "yellow",
    }
}

impl Bars {
    pub(super) fn new(batch_id: &str) -> Self {
        let mp = MultiProgress::new();
        let overall = mp.add(ProgressBar::new(0));
        overall.set_style(style(
            "{spinner:.cyan} {prefix:.bold} [{elapsed_precise}] {bar:32.cyan/blue} {pos}/{len} done · {msg}",
        ));
        overall.set_prefix(batch_id.to_string());
        overall.enable_steady_tick(Duration::from_millis(120));
        Bars {
            mp,
            overall,
            states: BTreeMap::new(),
            providers: BTreeMap::new(),
        }
    }

    fn update(&mut self, s: &Snapshot) {
        let total = s.info.total;
        self.overall.set_length(total);
        self.overall.set_position(s.info.done);
        self.overall.set_message(s.pace());
        for (i, state) in JobState::ALL.into_iter().enumerate() {
            let n = s.info.count(state);
            if n == 0 {
                if let Some(pb) = self.states.remove(&i) {
                    self.mp.remove(&pb);
                }
                continue;
            }
            let pb = match self.states.get(&i) {
                Some(pb) => pb.clone(),
                None => {
                    // After the overall bar and the states listed before this one.
                    let at = 1 + self.states.range(..i).count();
                    let pb = self.mp.insert(at, ProgressBar::new(total));
                    pb.set_style(style(&format!(
                        "  {{prefix:<15}} {{bar:32.{}}} {{pos:>7}}",
                        colour(state)
                    )));
                    pb.set_prefix(state.to_string());
                    self.states.insert(i, pb.clone());
                    pb
                }
            };
            pb.set_length(total);
            pb.set_position(n);
        }
        self.providers.retain(|name, pb| {
            let keep = s.providers.contains_key(name);
            if !keep {
                self.mp.remove(pb);
            }
            keep
        });
        for (name, p) in &s.providers {
            let pb = self.providers.entry(name.clone()).or_insert_with(|| {
                let pb = self.mp.add(ProgressBar::new(0));
                pb.set_style(style("  {msg}"));
                pb
            });
            pb.set_message(provider_line(name, p));
        }
    }

    fn each(&self, f: impl Fn(&ProgressBar)) {
        f(&self.overall);
        self.states.values().for_each(&f);
        self.providers.values().for_each(&f);
    }
}
