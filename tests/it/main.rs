//! Integration tests: real Redis, real HTTP to the simulator, real worker processes.

mod admission;
mod architecture;
mod budget;
mod check_config;
mod compat;
mod crash;
mod deploy;
mod durability;
mod durable_writes;
mod failures;
mod helpers;
mod logs;
mod metrics;
mod operator;
mod outage;
mod pipeline;
mod provider_fal;
mod provider_kling;
mod provider_oxen;
mod queue_traps;
mod redis_ops;
mod report;
mod results_file;
mod secrets;
mod validation;
mod waiting;
