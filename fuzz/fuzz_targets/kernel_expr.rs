//! The kernel declaration language of `ip.toml`: `Expr::parse`,
//! `Requirement::parse` and `Arg::parse` on any text, then evaluation
//! (`Expr::eval`, `Requirement::check`) for an arbitrary input size and
//! arbitrary parameter values, as a call supplies them. Evaluation is
//! checked arithmetic: any overflow must be an error, never a panic.
//! Whatever parses must parse again from its printed form to the same
//! value (specs are stored printed, in kernel bundles, and read back).
//!
//! Input layout: 8 bytes of input size, 1 byte choosing the kinds of the
//! parameter values, 4 × 8 bytes of parameter values, then the text.
#![no_main]

use accelhub_domain::kernel::{Arg, Expr, Requirement};
use accelhub_domain::Params;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn params(names: &[&str], kinds: u8, vals: &[u64; 4]) -> Params {
    let mut p = Params::new();
    for (i, name) in names.iter().enumerate() {
        let v = vals[i % 4];
        let value = match (kinds >> (2 * (i % 4))) & 3 {
            0 => Value::from(v),
            1 => Value::from(v % 1024),
            2 => Value::from(-((v % (1 << 40)) as i64) - 1),
            _ => Value::from(v as f64 / 3.0),
        };
        p.insert(name.to_string(), value);
    }
    p
}

fn eval_expr(e: &Expr, input: u64, kinds: u8, vals: &[u64; 4]) {
    let names = e.params();
    let _ = e.eval(input, &params(&names, kinds, vals));
    // Missing parameters are an error too.
    let _ = e.eval(input, &Params::new());
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 41 {
        return;
    }
    let input = u64::from_le_bytes(data[..8].try_into().unwrap());
    let kinds = data[8];
    let mut vals = [0u64; 4];
    for (i, v) in vals.iter_mut().enumerate() {
        *v = u64::from_le_bytes(data[9 + 8 * i..17 + 8 * i].try_into().unwrap());
    }
    let Ok(text) = std::str::from_utf8(&data[41..]) else {
        return;
    };

    if let Ok(e) = Expr::parse(text) {
        let again = Expr::parse(&e.to_string()).expect("a printed expression parses");
        assert_eq!(again, e);
        eval_expr(&e, input, kinds, &vals);
    }

    if let Ok(r) = Requirement::parse(text) {
        let again =
            Requirement::parse(&r.to_string_for_fuzz()).expect("a printed requirement parses");
        assert_eq!(again, r);
        // Every name either side, with values.
        let mut names: Vec<String> = Vec::new();
        for side in text.split(['<', '>', '=', '!']) {
            if let Ok(e) = Expr::parse(side) {
                names.extend(e.params().iter().map(|s| s.to_string()));
            }
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let _ = r.check(input, &params(&names, kinds, &vals));
    }

    if let Ok(a) = Arg::parse(text) {
        let printed = a.to_string();
        let again = Arg::parse(&printed)
            .unwrap_or_else(|e| panic!("printed argument {printed:?} does not parse: {e}"));
        assert_eq!(again, a, "printed as {printed:?}");
        if let Arg::Local(e) | Arg::Computed { expr: e, .. } = &a {
            eval_expr(e, input, kinds, &vals);
        }
    }
});

/// `Requirement` prints through serde (as a string), not `Display`.
trait Printed {
    fn to_string_for_fuzz(&self) -> String;
}

impl Printed for Requirement {
    fn to_string_for_fuzz(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::String(s)) => s,
            other => panic!("a requirement serializes as a string, got {other:?}"),
        }
    }
}
