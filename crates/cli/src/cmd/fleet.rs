//! `accelhub fleet`: nodes, devices and slots (operator).

use crate::cli::Conn;
use crate::output::emit;
use std::fmt::Write;

pub async fn fleet(conn: &Conn) -> anyhow::Result<()> {
    emit(conn.json, &conn.client()?.fleet().await?, |f, out| {
        for n in &f.nodes {
            writeln!(out, "node {} ({})", n.name, n.health)?;
            for d in &n.devices {
                writeln!(
                    out,
                    "  {:<6} {}/{} slots busy ({:.0}%)",
                    d.class,
                    d.busy,
                    d.slots,
                    d.utilisation * 100.0
                )?;
                for h in &d.hardware {
                    writeln!(
                        out,
                        "         device   {} ({}), {} MiB, {} compute units, {} slots",
                        h.name,
                        h.vendor,
                        h.memory_bytes >> 20,
                        h.compute_units,
                        h.slots
                    )?;
                }
                for l in &d.loaded {
                    writeln!(out, "         loaded   {l}")?;
                }
                for r in &d.resident {
                    writeln!(out, "         resident {r}")?;
                }
            }
        }
        Ok(())
    })
}
