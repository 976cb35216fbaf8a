//! The CLI's subcommands, one module per group. Each prints through
//! [`crate::output`].

pub mod account;
pub mod billing;
pub mod call;
pub mod deploy;
pub mod fleet;
pub mod ip;
pub mod job;
pub mod object;
pub mod transfer;
