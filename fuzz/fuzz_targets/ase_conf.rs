//! `ase.conf` parsing and validation on arbitrary text: a config error, never a panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut warnings = Vec::new();
    let _ = enforcer::config::Settings::parse(
        Path::new("ase.conf"),
        Path::new("/nonexistent-fuzz-dir"),
        text,
        &mut warnings,
    );
});
