//! Per-call cost of the wasm device alone: `cargo run --release -p
//! accelhub-wasm --example callbench -- ips/echo/echo.wasm [calls]`.
#![allow(clippy::unwrap_used)] // an example: a panic is its error report

use accelhub_device::{Backend, CallInput, ImageId};
use accelhub_domain::{Limits, Params};
use accelhub_wasm::{WasmBackend, WasmConfig};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: callbench MODULE.wasm [calls]")?;
    let calls: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let backend = Arc::new(WasmBackend::new(WasmConfig::default())?);
    let image = ImageId("bench".into());
    let t = Instant::now();
    backend
        .load(&image, Bytes::from(std::fs::read(&path)?))
        .await?;
    println!("compile: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    for clients in [1usize, 4, 16] {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let b = backend.clone();
            let image = image.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..calls / clients {
                    let call = CallInput::in_memory(
                        Bytes::from_static(b"ping"),
                        Params::new(),
                        Limits::DEFAULT,
                    );
                    b.call(&image, call).await.expect("call");
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{clients:>2} concurrent: {:.0} calls/s, {:.1} us/call",
            calls as f64 / secs,
            secs * 1e6 / calls as f64
        );
    }
    Ok(())
}
