//! The one integration-test binary (each binary links the whole stack, and
//! linking costs minutes here). One module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod cluster;
mod common;
mod council;
mod crash;
mod cross_engine;
mod exactly_once;
mod explain;
mod faults;
mod flight;
mod journal;
mod metrics;
mod power_loss;
mod query;
mod retention;
mod tiers;
mod validation;
