//! What commands print. A command's result goes to standard output through
//! [`emit`]: as pretty JSON with `--json`, else as text its renderer
//! writes. Tables are laid out by `comfy-table`. Notes for the person at
//! the terminal go to standard error through [`note`], so scripts reading
//! standard output never see them.

use comfy_table::{CellAlignment, Table};
use serde::Serialize;
use std::fmt::Display;
use std::io::Write;

/// The text a renderer writes (with `std::fmt::Write`).
pub type Text = String;

/// Print a command's result: `value` as JSON with `--json`, else what
/// `render` writes.
pub fn emit<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    render: impl FnOnce(&T, &mut Text) -> std::fmt::Result,
) -> anyhow::Result<()> {
    let mut out = Text::new();
    if json {
        out = serde_json::to_string_pretty(value)?;
        out.push('\n');
    } else {
        render(value, &mut out)?;
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// A note for the person at the terminal, on standard error.
pub fn note(msg: impl Display) {
    eprintln!("{msg}");
}

/// A borderless table: a header row, then `rows`, each column as wide as
/// its widest cell and two spaces apart; the columns numbered in `right`
/// are right-aligned. Ends with a newline.
pub fn table<R, C>(header: &[&str], right: &[usize], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator,
    C::Item: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut s = t.trim_fmt();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_borders() {
        let t = table(
            &["NAME", "BYTES"],
            &[1],
            [
                vec!["a".to_string(), "5".into()],
                vec!["longer".into(), "1234".into()],
            ],
        );
        assert_eq!(t, "NAME    BYTES\na           5\nlonger   1234\n");
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let t = table(&["KEY", "BYTES"], &[], Vec::<Vec<String>>::new());
        assert_eq!(t, "KEY  BYTES\n");
    }
}
