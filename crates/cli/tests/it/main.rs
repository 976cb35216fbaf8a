//! The CLI's integration suite: one test binary (linking the platform
//! once), one module per area. Each test starts the real `accelhub` binary.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

mod common;

mod agents;
mod autoscale;
mod billing;
mod console;
mod devices;
mod durability;
mod flow;
mod genomics;
mod genomics_ip;
mod hardening;
mod large;
mod limits;
mod market;
mod openapi;
mod outputs;
mod paging;
mod sandbox;
mod scaleout;
mod security;
mod verification;
