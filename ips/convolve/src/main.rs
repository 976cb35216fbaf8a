//! 3x3 convolution of an 8-bit grayscale image, as an Accelhub IP.
//!
//! Input: `width * height` bytes, one byte per pixel, row-major, top row
//! first. Output: an image of the same size. Parameters (JSON object in
//! `ACCELHUB_PARAMS`): `width` and `height` (required), `filter` (default 0):
//!
//! | filter | name      | kernel                           | result        |
//! |--------|-----------|----------------------------------|---------------|
//! | 0      | blur      | `[1 2 1; 2 4 2; 1 2 1]`          | (sum + 8) / 16 |
//! | 1      | sharpen   | `[0 -1 0; -1 5 -1; 0 -1 0]`      | sum           |
//! | 2      | edges     | `[-1 -1 -1; -1 8 -1; -1 -1 -1]`  | sum           |
//!
//! Integer arithmetic, results clamped to 0..=255. Pixels outside the image
//! read as the nearest edge pixel (clamp-to-edge). The OpenCL implementation
//! (`convolve.cl`) gives the same bytes.
//!
//! The image is streamed a row at a time: three rows are held in memory.

use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

/// A 3x3 filter: weights in row-major order, and the rounding division of
/// the weighted sum (`(sum + round) / divisor`).
struct Filter {
    name: &'static str,
    weights: [i32; 9],
    divisor: i32,
    round: i32,
}

impl Filter {
    /// The filter for parameter `filter`; `convolve.cl` uses the same codes.
    fn from_code(code: u64) -> Result<Filter, String> {
        Ok(match code {
            0 => Filter {
                name: "blur",
                weights: [1, 2, 1, 2, 4, 2, 1, 2, 1],
                divisor: 16,
                round: 8,
            },
            1 => Filter {
                name: "sharpen",
                weights: [0, -1, 0, -1, 5, -1, 0, -1, 0],
                divisor: 1,
                round: 0,
            },
            2 => Filter {
                name: "edges",
                weights: [-1, -1, -1, -1, 8, -1, -1, -1, -1],
                divisor: 1,
                round: 0,
            },
            _ => {
                return Err(format!(
                    "parameter filter must be 0 (blur), 1 (sharpen) or 2 (edges), got {code}"
                ))
            }
        })
    }

    /// One output row from the rows above, at and below it (already clamped
    /// to the image at its top and bottom edges).
    fn row(&self, rows: [&[u8]; 3], out: &mut Vec<u8>) {
        let w = rows[1].len();
        out.clear();
        for x in 0..w {
            // Clamp-to-edge columns.
            let cols = [x.saturating_sub(1), x, (x + 1).min(w - 1)];
            let mut sum = 0i32;
            for (r, row) in rows.iter().enumerate() {
                for (c, &col) in cols.iter().enumerate() {
                    sum += self.weights[3 * r + c] * i32::from(row[col]);
                }
            }
            // Only the blur divides, and its sum is never negative, so
            // integer division rounds half up as documented.
            let v = (sum + self.round) / self.divisor;
            out.push(v.clamp(0, 255) as u8);
        }
    }
}

/// The call parameters: the members of the JSON object in `ACCELHUB_PARAMS`
/// as (name, JSON text of the value). A small scanner instead of a JSON
/// library: it checks the structure and keeps values as text.
struct Params(Vec<(String, String)>);

impl Params {
    fn from_env() -> Result<Params, String> {
        let text = std::env::var("ACCELHUB_PARAMS").unwrap_or_default();
        Params::parse(&text).map_err(|e| format!("the parameters are not a JSON object: {e}"))
    }

    fn parse(text: &str) -> Result<Params, String> {
        let s = text.as_bytes();
        let mut i = skip_ws(s, 0);
        let mut members = Vec::new();
        if i == s.len() {
            return Ok(Params(members)); // no parameters at all
        }
        if s[i] != b'{' {
            return Err("expected '{'".into());
        }
        i = skip_ws(s, i + 1);
        if s.get(i) == Some(&b'}') {
            return Ok(Params(members));
        }
        loop {
            if s.get(i) != Some(&b'"') {
                return Err(format!("expected a member name at byte {i}"));
            }
            let end = skip_string(s, i)?;
            let name = text[i + 1..end - 1].to_string();
            i = skip_ws(s, end);
            if s.get(i) != Some(&b':') {
                return Err(format!("expected ':' after \"{name}\""));
            }
            let start = skip_ws(s, i + 1);
            let end = skip_value(s, start)?;
            members.push((name, text[start..end].to_string()));
            i = skip_ws(s, end);
            match s.get(i) {
                Some(b',') => i = skip_ws(s, i + 1),
                Some(b'}') => break,
                _ => return Err(format!("expected ',' or '}}' at byte {i}")),
            }
        }
        if skip_ws(s, i + 1) != s.len() {
            return Err("unexpected text after the object".into());
        }
        Ok(Params(members))
    }

    /// Parameter `name` as an integer in 0..=u32::MAX, or `default` when it
    /// is absent (an error when there is no default).
    fn u32(&self, name: &str, default: Option<u32>, what: &str) -> Result<u32, String> {
        let Some((_, raw)) = self.0.iter().rev().find(|(n, _)| n == name) else {
            return default.ok_or_else(|| format!("the parameter {name} ({what}) is required"));
        };
        let ok = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| raw.parse::<u32>().ok())
            .flatten()
            .ok_or_else(|| {
                format!("parameter {name} ({what}) must be an integer from 0 to 4294967295, got {raw:.20}")
            })
    }
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index just past the JSON string starting at `s[i] == '"'`.
fn skip_string(s: &[u8], mut i: usize) -> Result<usize, String> {
    i += 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("a string is not terminated".into())
}

/// The index just past the JSON value starting at `s[i]`: a string, an
/// object or array (skipped whole), or a number, `true`, `false`, `null`.
fn skip_value(s: &[u8], i: usize) -> Result<usize, String> {
    match s.get(i) {
        None => Err("a value is missing".into()),
        Some(b'"') => skip_string(s, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < s.len() {
                match s[j] {
                    b'"' => {
                        j = skip_string(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err("an object or array is not closed".into())
        }
        Some(_) => {
            let mut j = i;
            while j < s.len() && !b",}] \t\r\n".contains(&s[j]) {
                j += 1;
            }
            if j == i {
                return Err(format!("a value is missing at byte {i}"));
            }
            Ok(j)
        }
    }
}

/// Read up to `n` more bytes into `row` (cleared first); returns how many
/// arrived. `take` + `read_to_end` grows the row as data arrives, so a huge
/// `width` with a short input fails cleanly instead of allocating up front.
fn read_row(input: &mut impl Read, row: &mut Vec<u8>, n: usize) -> Result<usize, String> {
    row.clear();
    input
        .take(n as u64)
        .read_to_end(row)
        .map_err(|e| format!("reading the input: {e}"))
}

fn run() -> Result<(), String> {
    let params = Params::from_env()?;
    let width = params.u32("width", None, "image width in pixels")?;
    let height = params.u32("height", None, "image height in pixels")?;
    let filter = Filter::from_code(
        params
            .u32("filter", Some(0), "0 blur, 1 sharpen, 2 edges")?
            .into(),
    )?;
    let (w, h) = (width as usize, height as usize);
    let expected = u64::from(width) * u64::from(height);
    let short = |got: u64| {
        format!(
            "the input ended after {got} bytes; a {width}x{height} image is width * height = \
             {expected} bytes (one byte per pixel, row-major)"
        )
    };

    let mut input = io::stdin().lock();
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if expected > 0 {
        // A window of three rows: above, current, below. At the top and
        // bottom edges the missing row is the edge row itself.
        let mut above = Vec::new();
        let mut current = Vec::new();
        let mut below = Vec::new();
        let mut result = Vec::new();
        let mut got = read_row(&mut input, &mut current, w)? as u64;
        if got < w as u64 {
            return Err(short(got));
        }
        above.extend_from_slice(&current);
        for y in 0..h {
            if y + 1 < h {
                let n = read_row(&mut input, &mut below, w)?;
                got += n as u64;
                if n < w {
                    return Err(short(got));
                }
            } else {
                below.clone_from(&current);
            }
            filter.row([&above, &current, &below], &mut result);
            out.write_all(&result)
                .map_err(|e| format!("writing the output: {e}"))?;
            // Slide the window down one row, reusing the buffers.
            std::mem::swap(&mut above, &mut current);
            std::mem::swap(&mut current, &mut below);
        }
    }
    // The image must be the whole input: more bytes mean wrong dimensions.
    let mut extra = [0u8; 1];
    if input
        .read(&mut extra)
        .map_err(|e| format!("reading the input: {e}"))?
        > 0
    {
        return Err(format!(
            "the input is longer than width * height = {width} * {height} = {expected} bytes; \
             check the width and height parameters"
        ));
    }
    out.flush()
        .map_err(|e| format!("writing the output: {e}"))?;
    eprintln!("convolve: {width}x{height}, filter {}", filter.name);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convolve: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse() {
        let p = Params::parse(r#"{"width": 64, "name": "a,}b", "x": [1, {"y": 2}], "height":48}"#)
            .unwrap();
        assert_eq!(p.u32("width", None, "").unwrap(), 64);
        assert_eq!(p.u32("height", None, "").unwrap(), 48);
        assert_eq!(p.u32("filter", Some(0), "").unwrap(), 0);
        assert!(p.u32("name", None, "").is_err());
        assert!(p.u32("missing", None, "").unwrap_err().contains("required"));
        assert!(Params::parse("").unwrap().0.is_empty());
        assert!(Params::parse("{}").unwrap().0.is_empty());
        assert!(Params::parse("{\"width\": }").is_err());
        assert!(Params::parse("{\"width\": 1,}").is_err());
        assert!(Params::parse("[1]").is_err());
        for bad in ["-1", "1.5", "4294967296", "\"64\""] {
            let p = Params::parse(&format!("{{\"width\": {bad}}}")).unwrap();
            assert!(p.u32("width", None, "").is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_clamp_at_the_edges() {
        let f = Filter::from_code(1).unwrap();
        let mut out = Vec::new();
        let row = [10u8, 200, 30];
        f.row([&row, &row, &row], &mut out);
        // 5c - left - right - 2c (up/down are the row itself).
        assert_eq!(out, [0, 255, 0]);
        let blur = Filter::from_code(0).unwrap();
        let one = [7u8];
        blur.row([&one, &one, &one], &mut out);
        assert_eq!(out, [7]);
        assert!(Filter::from_code(3).is_err());
    }
}
