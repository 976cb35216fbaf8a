//! The example IPs with both a `wasm` and an `opencl` implementation, run
//! through the platform's device backends (the same code a node runs) on
//! the same inputs, next to native Rust code for the same work:
//!
//! - `sha256`: SHA-256 of every 1 KiB chunk (native: the `sha2` crate);
//! - `convolve`: 3x3 Gaussian blur of an 8-bit image (native: a plain loop);
//! - `blackscholes`: call and put prices of a batch of options (native: the
//!   same f32 formula in Rust).
//!
//! Native code runs on all cores, as PoCL does; a wasm call is one thread.
//! Each figure is the median of `--rounds` calls. Outputs are checked to
//! agree across classes before any figure is printed. Then the OpenCL
//! program load: cold (kernel source built), from the binary a build left
//! (a second slot of the same device), and cached (the slot holds it).

use accelhub_device::{Backend, CallInput, ImageId};
use accelhub_domain::kernel::KernelBundle;
use accelhub_domain::{Limits, Manifest, Params};
use accelhub_opencl::{OpenClBackend, OpenClConfig};
use accelhub_wasm::{WasmBackend, WasmConfig};
use anyhow::{anyhow, Context};
use bytes::Bytes;
use clap::Parser;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Calls per figure (the median is printed).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Input size of each call, in MiB.
    #[arg(long, default_value_t = 16)]
    mib: usize,
}

const LIMITS: Limits = Limits {
    timeout_ms: 600_000,
    memory_bytes: 4 << 30,
    output_bytes: 1 << 30,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Ip {
    name: &'static str,
    input: Bytes,
    params: Params,
    native: fn(&[u8], &Params) -> Vec<u8>,
    /// Elements compared as f32 within this tolerance (0: bytes).
    tolerance: f32,
    unit: &'static str,
    items: usize,
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Run `f` over `n` items split across all cores; each call gets a range
/// and the output slice for it.
fn parallel(n: usize, out_per_item: usize, f: impl Fn(usize, usize, &mut [u8]) + Sync) -> Vec<u8> {
    let mut out = vec![0u8; n * out_per_item];
    let per = n.div_ceil(threads()).max(1);
    std::thread::scope(|s| {
        for (i, chunk) in out.chunks_mut(per * out_per_item).enumerate() {
            let f = &f;
            s.spawn(move || f(i * per, (i * per + per).min(n), chunk));
        }
    });
    out
}

fn native_sha256(input: &[u8], _: &Params) -> Vec<u8> {
    let chunks: Vec<&[u8]> = input.chunks(1024).collect();
    parallel(chunks.len(), 32, |a, b, out| {
        for (i, c) in chunks[a..b].iter().enumerate() {
            out[i * 32..i * 32 + 32].copy_from_slice(&sha2::Sha256::digest(c));
        }
    })
}

fn native_blur(input: &[u8], p: &Params) -> Vec<u8> {
    let w = p["width"].as_u64().unwrap_or(0) as usize;
    let h = p["height"].as_u64().unwrap_or(0) as usize;
    parallel(h, w, |a, b, out| {
        for y in a..b {
            for x in 0..w {
                let px = |dx: isize, dy: isize| {
                    let xx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
                    let yy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                    input[yy * w + xx] as u32
                };
                let sum = px(-1, -1)
                    + 2 * px(0, -1)
                    + px(1, -1)
                    + 2 * px(-1, 0)
                    + 4 * px(0, 0)
                    + 2 * px(1, 0)
                    + px(-1, 1)
                    + 2 * px(0, 1)
                    + px(1, 1);
                out[(y - a) * w + x] = ((sum + 8) / 16) as u8;
            }
        }
    })
}

fn cnd(d: f32) -> f32 {
    let k = 1.0 / (1.0 + 0.231_641_9 * d.abs());
    let poly = k
        * (0.319_381_53
            + k * (-0.356_563_78 + k * (1.781_477_9 + k * (-1.821_256 + k * 1.330_274_5))));
    let tail = 0.398_942_3 * (-0.5 * d * d).exp() * poly;
    if d > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

fn native_black_scholes(input: &[u8], _: &Params) -> Vec<u8> {
    let n = input.len() / 20;
    parallel(n, 8, |a, b, out| {
        for i in a..b {
            let f = |j: usize| {
                let o = i * 20 + j * 4;
                f32::from_le_bytes([input[o], input[o + 1], input[o + 2], input[o + 3]])
            };
            let (s, k, r, sigma, t) = (f(0), f(1), f(2), f(3), f(4));
            let vol = sigma * t.sqrt();
            let d1 = ((s / k).ln() + (r + 0.5 * sigma * sigma) * t) / vol;
            let d2 = d1 - vol;
            let dk = k * (-r * t).exp();
            let call = s * cnd(d1) - dk * cnd(d2);
            let put = dk * (1.0 - cnd(d2)) - s * (1.0 - cnd(d1));
            let o = (i - a) * 8;
            out[o..o + 4].copy_from_slice(&call.to_le_bytes());
            out[o + 4..o + 8].copy_from_slice(&put.to_le_bytes());
        }
    })
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, mut x: u32) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn options(n: usize) -> Vec<u8> {
    let r = noise(n * 5, 7);
    let mut out = Vec::with_capacity(n * 20);
    for i in 0..n {
        let u = |j: usize| r[i * 5 + j] as f32 / 255.0;
        for v in [
            50.0 + 100.0 * u(0),
            60.0 + 80.0 * u(1),
            0.01 + 0.05 * u(2),
            0.1 + 0.4 * u(3),
            0.25 + 2.0 * u(4),
        ] {
            out.extend_from_slice(&f32::to_le_bytes(v));
        }
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn agree(ip: &Ip, a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if ip.tolerance == 0.0 {
        return a == b;
    }
    a.chunks_exact(4).zip(b.chunks_exact(4)).all(|(x, y)| {
        let x = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        let y = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
        (x - y).abs() <= ip.tolerance * x.abs().max(1.0)
    })
}

/// The wasm module and the OpenCL bundle of an example IP, as publishing
/// would store them.
fn artifacts(name: &str) -> anyhow::Result<(Bytes, Bytes)> {
    let dir = repo().join("ips").join(name);
    let manifest = Manifest::parse(&std::fs::read_to_string(dir.join("ip.toml"))?)?;
    let mut wasm = None;
    let mut opencl = None;
    for imp in &manifest.implementations {
        let bytes = std::fs::read(dir.join(&imp.artifact))
            .with_context(|| format!("{name}: {}", imp.artifact))?;
        match (imp.device.as_str(), &imp.kernel) {
            ("wasm", _) => wasm = Some(Bytes::from(bytes)),
            ("opencl", Some(spec)) => {
                opencl = Some(Bytes::from(
                    KernelBundle {
                        spec: spec.clone(),
                        program: bytes,
                    }
                    .encode(),
                ))
            }
            _ => {}
        }
    }
    Ok((
        wasm.ok_or_else(|| anyhow!("{name} has no wasm implementation"))?,
        opencl.ok_or_else(|| anyhow!("{name} has no opencl implementation"))?,
    ))
}

async fn time_calls(
    backend: &dyn Backend,
    image: &ImageId,
    ip: &Ip,
    rounds: usize,
) -> anyhow::Result<(Duration, Bytes)> {
    let mut times = Vec::new();
    let mut last = Bytes::new();
    for _ in 0..rounds {
        let call = CallInput::in_memory(ip.input.clone(), ip.params.clone(), LIMITS);
        let started = Instant::now();
        let out = backend
            .call(image, call)
            .await
            .map_err(|e| anyhow!("{} on {}: {e}", ip.name, backend.class()))?;
        times.push(started.elapsed());
        last = out.output.bytes();
    }
    Ok((median(times), last))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rounds = args.rounds.max(1);
    let status = std::process::Command::new("bash")
        .arg(repo().join("scripts/build-ips.sh"))
        .status()?;
    anyhow::ensure!(status.success(), "building the example IPs failed");

    let opencl = OpenClBackend::discover(OpenClConfig {
        slots_per_device: 2,
        ..OpenClConfig::default()
    })?;
    let wasm = WasmBackend::new(WasmConfig::default())?;
    for h in opencl.hardware() {
        println!(
            "opencl device: {} ({}), {} compute units, {}",
            h.name, h.vendor, h.compute_units, h.runtime
        );
    }
    println!("native: {} threads; wasm: one thread per call", threads());

    let bytes = args.mib << 20;
    let side = ((bytes as f64).sqrt() as usize).max(16);
    let n_options = bytes / 20;
    let ips = [
        Ip {
            name: "sha256",
            input: Bytes::from(noise(bytes, 1)),
            params: Params::new(),
            native: native_sha256,
            tolerance: 0.0,
            unit: "MiB",
            items: bytes,
        },
        Ip {
            name: "convolve",
            input: Bytes::from(noise(side * side, 3)),
            params: serde_params(side),
            native: native_blur,
            tolerance: 0.0,
            unit: "Mpixel",
            items: side * side,
        },
        Ip {
            name: "blackscholes",
            input: Bytes::from(options(n_options)),
            params: Params::new(),
            native: native_black_scholes,
            tolerance: 1e-3,
            unit: "Moption",
            items: n_options,
        },
    ];

    println!();
    println!("| IP | input | wasm | opencl (PoCL) | native | opencl / wasm | opencl / native |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut loads = Vec::new();
    for ip in &ips {
        let (wasm_art, cl_art) = artifacts(ip.name)?;
        let wasm_id = ImageId(format!("wasm:{}", ip.name));
        let cl_id = ImageId(format!("opencl:{}", ip.name));
        wasm.load(&wasm_id, wasm_art).await?;
        let cold = opencl.load(&cl_id, cl_art.clone()).await?;
        let started = Instant::now();
        let cached = opencl.load(&cl_id, cl_art).await?;
        let cached = (cached.cached, started.elapsed());
        // Warm-up calls (and the first call's programming of a slot).
        let (_, w_out) = time_calls(&wasm, &wasm_id, ip, 1).await?;
        let (_, c_out) = time_calls(&opencl, &cl_id, ip, 1).await?;
        let n_out = (ip.native)(&ip.input, &ip.params);
        anyhow::ensure!(
            agree(ip, &n_out, &w_out),
            "{}: wasm and native disagree",
            ip.name
        );
        anyhow::ensure!(
            agree(ip, &n_out, &c_out),
            "{}: opencl and native disagree",
            ip.name
        );

        // A second slot of the device is programmed from the binary the
        // first build left: two calls at once take both slots.
        let small = Ip {
            input: ip.input.slice(..ip.input.len().min(1 << 16) / 20 * 20),
            params: ip.params.clone(),
            ..*ip
        };
        let small = if ip.name == "convolve" {
            Ip {
                input: ip.input.slice(..64 * 64),
                params: serde_params(64),
                ..small
            }
        } else {
            small
        };
        let (a, b) = tokio::join!(
            opencl.call(
                &cl_id,
                CallInput::in_memory(small.input.clone(), small.params.clone(), LIMITS)
            ),
            opencl.call(
                &cl_id,
                CallInput::in_memory(small.input.clone(), small.params.clone(), LIMITS)
            )
        );
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&a.map(|o| o.log).unwrap_or_default()),
            String::from_utf8_lossy(&b.map(|o| o.log).unwrap_or_default())
        );
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("{log}");
        }
        let from_binary = log
            .split("programmed slot ")
            .nth(1)
            .and_then(|s| s.split(" in ").nth(1))
            .and_then(|s| s.split(" ms").next())
            .and_then(|s| s.parse::<f64>().ok());

        let (w, _) = time_calls(&wasm, &wasm_id, ip, rounds).await?;
        let (c, _) = time_calls(&opencl, &cl_id, ip, rounds).await?;
        let mut nt = Vec::new();
        for _ in 0..rounds {
            let s = Instant::now();
            std::hint::black_box((ip.native)(&ip.input, &ip.params));
            nt.push(s.elapsed());
        }
        let n = median(nt);
        let rate = |d: Duration| ip.items as f64 / 1e6 / d.as_secs_f64();
        let rate = |d: Duration| {
            if ip.unit == "MiB" {
                ip.items as f64 / (1 << 20) as f64 / d.as_secs_f64()
            } else {
                rate(d)
            }
        };
        println!(
            "| {} | {:.1} MiB | {:.1} {u}/s | {:.1} {u}/s | {:.1} {u}/s | {:.2} | {:.2} |",
            ip.name,
            ip.input.len() as f64 / (1 << 20) as f64,
            rate(w),
            rate(c),
            rate(n),
            w.as_secs_f64() / c.as_secs_f64(),
            n.as_secs_f64() / c.as_secs_f64(),
            u = ip.unit
        );
        loads.push((ip.name, cold.duration, from_binary, cached));
    }
    println!();
    println!("| IP | program load cold (build from source) | from the cached binary (another slot) | cached in the slot |");
    println!("|---|---:|---:|---:|");
    for (name, cold, binary, cached) in loads {
        println!(
            "| {name} | {:.1} ms | {} | {} |",
            cold.as_secs_f64() * 1e3,
            binary
                .map(|b| format!("{b:.1} ms"))
                .unwrap_or_else(|| "–".into()),
            if cached.0 {
                format!("{:.3} ms", cached.1.as_secs_f64() * 1e3)
            } else {
                "reprogrammed".into()
            }
        );
    }
    Ok(())
}

fn serde_params(side: usize) -> Params {
    let mut p = Params::new();
    p.insert("width".into(), side.into());
    p.insert("height".into(), side.into());
    p
}
