//! `ip.toml` as a vendor uploads it: `Manifest::parse` must return a
//! value or an error for any text, never panic, hang or exhaust memory.
#![no_main]

use accelhub_domain::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Manifest::parse(text) {
        // What the platform does next with a parsed manifest.
        let _ = m.referenced_files();
    }
});
