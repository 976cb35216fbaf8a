//! `accelhub invoke`: a synchronous call. Its output is the IP's bytes,
//! written raw; the call's summary is a note on standard error.

use crate::cli::{parse_params, Conn};
use crate::cmd::transfer::write_response;
use crate::output::note;
use anyhow::Context;
use std::path::Path;

pub async fn invoke(
    conn: &Conn,
    ip: &str,
    input: &Path,
    params: &[String],
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let c = conn.client()?;
    let params = parse_params(params)?;
    let data = if input == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?
    };
    let (info, resp) = c.invoke_response(ip, &params, data).await?;
    let n = write_response(resp, output).await?;
    note(format_args!(
        "{}@{} on {}: {n} bytes out, {:.3} ms device time, price {}{} (call {})",
        info.ip,
        info.version,
        info.device,
        info.device_time_us as f64 / 1e3,
        info.price,
        if info.cold_start { ", cold start" } else { "" },
        info.call_id
    ));
    Ok(())
}
