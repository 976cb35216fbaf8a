//! The no-op IP: copies stdin to stdout, streaming (constant memory), so it
//! also measures how the platform moves large data.

use std::io::{self, Write};

fn main() {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if io::copy(&mut stdin.lock(), &mut out).is_err() || out.flush().is_err() {
        eprintln!("echo: broken stream");
        std::process::exit(2);
    }
}
