//! The no-op IP: copies stdin to stdout. Measures the platform's own cost
//! per call.

use std::io::{self, Read, Write};

fn main() {
    let mut buf = Vec::new();
    if io::stdin().read_to_end(&mut buf).is_err() {
        std::process::exit(2);
    }
    if io::stdout().write_all(&buf).is_err() {
        std::process::exit(2);
    }
}
