//! `accelhub usage`, `accelhub subscribe` and `accelhub invoice`.

use crate::cli::Conn;
use crate::output::{emit, table};
use std::fmt::Write;

pub async fn usage(conn: &Conn, since: Option<&str>) -> anyhow::Result<()> {
    let report = conn.client()?.usage(since).await?;
    emit(conn.json, &report, |report, out| {
        out.push_str(&table(
            &[
                "TIME",
                "KIND",
                "ACCOUNT",
                "IP",
                "VERSION",
                "DEVICE",
                "IN",
                "OUT",
                "DEVICE_MS",
                "PRICE",
            ],
            &[6, 7, 8, 9],
            report.records.iter().map(|r| {
                [
                    r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    r.kind.to_string(),
                    r.account.as_deref().unwrap_or("-").to_string(),
                    r.ip.clone(),
                    r.version.clone(),
                    r.device.clone(),
                    r.bytes_in.to_string(),
                    r.bytes_out.to_string(),
                    format!("{:.3}", r.device_time_us as f64 / 1e3),
                    if r.billed {
                        r.price.to_string()
                    } else {
                        format!("({})", r.outcome)
                    },
                ]
            }),
        ));
        let t = &report.totals;
        writeln!(
            out,
            "total ({} view): {} records, {} billed, {} failed (unbilled), {} bytes in, {} bytes out, {:.3} ms device time, amount {}",
            report.view, t.records, t.billed, t.failed, t.bytes_in, t.bytes_out,
            t.device_time_us as f64 / 1e3, t.amount
        )
    })
}

pub async fn subscribe(conn: &Conn, ip: &str, plan: &str) -> anyhow::Result<()> {
    let sub = conn.client()?.subscribe(ip, plan).await?;
    emit(conn.json, &sub, |sub, out| {
        writeln!(
            out,
            "subscribed to {} of {} from {}",
            sub.plan,
            sub.ip,
            sub.since.format("%Y-%m-%d %H:%M:%S")
        )
    })
}

pub async fn invoice(conn: &Conn, month: Option<&str>) -> anyhow::Result<()> {
    let inv = conn.client()?.invoice(month).await?;
    emit(conn.json, &inv, |inv, out| {
        writeln!(out, "{} {} for {}", inv.view, inv.month, inv.account)?;
        let lines = table(
            &["IP", "PLAN", "ITEM", "QUANTITY", "AMOUNT"],
            &[3, 4],
            inv.lines.iter().map(|l| {
                [
                    l.ip.clone(),
                    l.plan.clone(),
                    l.item.to_string(),
                    l.quantity.to_string(),
                    l.amount.to_string(),
                ]
            }),
        );
        for line in lines.lines() {
            writeln!(out, "  {line}")?;
        }
        writeln!(out, "  total {}", inv.total)?;
        if inv.view != "user" {
            writeln!(
                out,
                "  platform share {:.2}%: {}; vendors' net: {}",
                inv.platform_share_bps as f64 / 100.0,
                inv.platform_cut,
                inv.vendor_net
            )?;
        }
        Ok(())
    })
}
