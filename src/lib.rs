//! restyle: a durable batch runner for Kling O1 video-to-video restyle jobs.
//!
//! One source video × many prompts goes in; one downloaded, checksummed output video per
//! prompt comes out, however long the upstream takes and whatever fails on the way.
//!
//! Pipeline, and the module that owns each part, in order:
//!
//! - [`batch`]: batch spec (TOML, CLI flags, prompt files), validation, batch ids.
//! - [`producer`]: expands a validated batch into jobs and enqueues them idempotently.
//! - [`queue`]: the apalis `Backend` on Redis; owns every Redis key and Lua script
//!   (job records, batch counters, leases, parked jobs, the dead set).
//! - [`worker`]: the stages submit → poll → finish, the run loop and a single-step entry.
//! - [`admission`]: fleet-wide request rate, 429 cool-down and in-flight cap per provider.
//! - [`upstream`]: the provider trait, error classes, the poll schedule; one file per provider.
//! - [`sink`]: results: JSONL file and downloaded outputs.
//! - [`sim`]: the simulator (the `restyle-sim` crate), a real HTTP peer speaking each
//!   provider's protocol.
//! - [`status`]: the one place that renders tables and progress; [`report`] the
//!   HTML contact sheet; [`export`] results as JSONL or CSV.
//! - [`config`], [`telemetry`], [`metrics`], [`cli`], [`demo`]: settings, logs, metrics
//!   and health, the command line.
//!
//! The durable truth about a job is its record in Redis, never an in-flight task.

pub mod admission;
pub mod batch;
pub mod cli;
pub mod config;
pub mod cost;
pub mod demo;
pub mod export;
pub mod job;
pub mod localredis;
pub mod metrics;
pub mod model;
pub mod money;
pub mod ops;
pub mod producer;
pub mod queue;
pub mod report;
pub mod shutdown;
pub mod sink;
pub mod status;
pub mod telemetry;
pub mod upstream;
pub mod worker;

/// The provider simulator: its own crate (`restyle-sim`, in `sim/`), which shares no code
/// with the clients in [`upstream`].
pub use restyle_sim as sim;
