//! An uploaded package: `Package::from_tar` on any bytes (tar framing,
//! paths, entry kinds, duplicate entries, sizes, then the `ip.toml`).
#![no_main]

use accelhub_core::Package;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Package::from_tar(data) {
        // Every file the manifest names is in the package.
        for f in p.manifest.referenced_files() {
            assert!(
                p.files.contains_key(f),
                "manifest names '{f}', not in the package"
            );
        }
        assert!(p.files.contains_key("ip.toml"));
    }
});
