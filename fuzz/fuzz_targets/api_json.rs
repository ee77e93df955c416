//! API definition (`api/<id>.json`) parsing and validation on arbitrary text, in both
//! modes: a config error naming the key, never a panic.

#![no_main]

use std::path::Path;

use enforcer::config::{ApiDef, Mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [Mode::Inline, Mode::Sideband] {
        let mut warnings = Vec::new();
        let _ = ApiDef::parse(Path::new("fuzz.json"), "fuzz", text, mode, &mut warnings);
    }
});
