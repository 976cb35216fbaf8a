//! `accelhub`: the platform server, and the CLI that talks to it.

mod agent;
mod cli;
mod cmd;
mod genomics;
mod output;
mod serve;

use clap::Parser;
use std::process::ExitCode;

/// The server allocates and frees many small buffers per request (headers,
/// bodies, futures); mimalloc's thread-local free lists make that cheaper
/// than glibc's malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(args.blocking_threads())
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
