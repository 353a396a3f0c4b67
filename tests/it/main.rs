//! Integration tests: real Redis, real HTTP to the simulator, real worker processes.

mod failures;
mod helpers;
mod pipeline;
mod queue_traps;
mod secrets;
mod validation;
