//! Misbehaves on request, to prove the sandbox holds. The `mode` parameter
//! picks the misbehaviour; without one it echoes its input (so it passes
//! verification like any IP).
//!
//! - `loop`: spin forever (the deadline must stop it)
//! - `alloc`: allocate memory without end (the memory cap must stop it)
//! - `flood`: write output without end (the output cap must stop it)
//! - `spin`: burn `iters` iterations, then echo (a slow but honest call)
//! - `fail`: complain on stderr and exit with code 3
//! - `trap`: execute `unreachable`
//! - `repeat`: write `mb` MiB of a byte pattern (a large honest output)
//! - `sleep`: sleep `secs` seconds in the host (WASI `poll_oneoff`), then
//!   echo; a deadline or cancel must end it while it sleeps

use std::io::{self, Read, Write};

fn param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    let at = params.find(&format!("\"{key}\""))?;
    let rest = params[at + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest.find(|c: char| c == '"' || c == ',' || c == '}').unwrap_or(rest.len());
    Some(&rest[..end])
}

fn echo() {
    let mut buf = Vec::new();
    let _ = io::stdin().read_to_end(&mut buf);
    let _ = io::stdout().write_all(&buf);
}

fn main() {
    let params = std::env::var("ACCELHUB_PARAMS").unwrap_or_default();
    match param(&params, "mode").unwrap_or("echo") {
        "loop" => {
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![7u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "flood" => {
            let chunk = vec![b'x'; 65536];
            let mut out = io::stdout().lock();
            loop {
                if out.write_all(&chunk).is_err() {
                    eprintln!("hostile: stdout refused more output");
                    std::process::exit(1);
                }
            }
        }
        "flood-outputs" => {
            // Named outputs past their cap: the host must stop this.
            let chunk = vec![b'x'; 65536];
            let mut f = match std::fs::File::create("/outputs/extra") {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("hostile: no /outputs: {e}");
                    std::process::exit(3);
                }
            };
            loop {
                if f.write_all(&chunk).is_err() {
                    eprintln!("hostile: /outputs refused more output");
                    std::process::exit(1);
                }
            }
        }
        "spin" => {
            let iters: u64 = param(&params, "iters").and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
            let mut x: u64 = 1;
            for _ in 0..iters {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            eprintln!("hostile: spun {iters} times ({x:x})");
            echo();
        }
        "repeat" => {
            let mb: usize = param(&params, "mb").and_then(|s| s.parse().ok()).unwrap_or(1);
            let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
            let mut out = io::stdout().lock();
            for _ in 0..mb {
                if out.write_all(&chunk).is_err() {
                    std::process::exit(1);
                }
            }
        }
        "sleep" => {
            let secs: u64 = param(&params, "secs").and_then(|s| s.parse().ok()).unwrap_or(120);
            std::thread::sleep(std::time::Duration::from_secs(secs));
            echo();
        }
        "fail" => {
            eprintln!("hostile: failing on purpose");
            std::process::exit(3);
        }
        "trap" => {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            std::process::abort();
        }
        _ => echo(),
    }
}
