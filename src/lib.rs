//! restyle: a durable batch runner for Kling O1 video-to-video restyle jobs.
//!
//! One source video × many prompts goes in; one downloaded, checksummed output video per
//! prompt comes out, however long the upstream takes and whatever fails on the way.
//! `docs/architecture.md` explains the crates, the job state machine and where each
//! concern lives.
//!
//! Pipeline, and the module that owns each part, in order:
//!
//! - [`batch`]: batch spec (TOML, CLI flags, prompt files), validation, batch ids, and
//!   the enqueue-time probe of the source clip and images against provider limits.
//! - [`model`]: the shared vocabulary: providers, models, the batch and job payload.
//! - [`media`]: the video and images a batch sends: stored references, payloads held once
//!   per batch, and the handles requests carry.
//! - [`producer`]: expands a validated batch into jobs and enqueues them idempotently.
//! - [`job`]: the job as a type: its states, its record, its id, a transition.
//! - [`queue`]: the apalis `Backend` on Redis; owns every Redis key and Lua script
//!   (job records, batch counters, leases, parked jobs, the dead set, and the retention
//!   that expires finished batches).
//! - [`worker`]: the run loop and a single-step entry; one file per stage (submit,
//!   poll, finish) and the batch-done announcement.
//! - [`admission`]: the gate before each upstream call: account pause, budget, fleet-wide
//!   request rate and 429 cool-down, in-flight cap per provider.
//! - [`upstream`]: the provider trait, error classes, the poll schedule; one module per
//!   provider.
//! - [`push`]: push completion: the per-job webhook and callback URLs providers are given,
//!   and `restyle receive`, which verifies a push (fal's Ed25519 signature, Kling's token)
//!   and moves the job's next poll to now. Polling stays the source of truth.
//! - [`cost`] and [`money`]: estimates and tallies, in exact [`money::Usd`].
//! - [`sink`]: results: the result line, the JSONL file and downloaded outputs, or an
//!   object store (S3, GCS, Azure) holding outputs, result objects, JSONL and sheet.
//! - [`egress`]: where output downloads and webhooks may connect (no loopback, private,
//!   link-local or metadata addresses unless allowed), after DNS and on every redirect.
//! - [`status`]: the one place that renders tables and progress; [`report`] the HTML
//!   contact sheet; [`export`] results as JSONL or CSV; [`ops`] operator commands.
//! - [`serve`]: `restyle serve`, the HTTP API (`/api/v1`, bearer tokens, roles) over
//!   the same functions as the CLI.
//! - [`config`], [`telemetry`], [`metrics`], [`cli`], [`demo`], [`localredis`],
//!   [`shutdown`]: settings, logs, metrics and health, the command line, the demo and its
//!   private Redis, signals.
//! - [`sim`]: the simulator (the `restyle-sim` crate), a real HTTP peer speaking each
//!   provider's protocol.
//!
//! The durable truth about a job is its record in Redis, never an in-flight task.

pub mod batch;
pub mod model;
pub mod media;
pub mod producer;
pub mod job;
pub mod queue;
pub mod worker;
pub mod admission;
pub mod upstream;
pub mod push;
pub mod cost;
pub mod money;
pub mod sink;
pub mod egress;
pub mod status;
pub mod report;
pub mod export;
pub mod ops;
pub mod config;
pub mod telemetry;
pub mod metrics;
pub mod serve;
pub mod cli;
pub mod demo;
pub mod localredis;
pub mod shutdown;

/// The provider simulator: its own crate (`restyle-sim`, in `sim/`), which shares no code
/// with the clients in [`upstream`].
pub use restyle_sim as sim;
