//! The SCIM filter parser and the userActivities compile step on arbitrary input: no
//! panic, errors point inside the input, and whatever parses prints to a filter that
//! parses back to the same tree.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match enforcer::scim::parse::parse(text) {
        Ok(filter) => {
            let printed = filter.to_string();
            match enforcer::scim::parse::parse(&printed) {
                Ok(again) => assert_eq!(filter, again, "{text:?} printed as {printed:?}"),
                Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
            }
            let _ = enforcer::reports::user_activities::compile(Some(&filter), None, 1_800_000_000);
        }
        Err(e) => assert!(e.offset <= text.len(), "{text:?}: offset {}", e.offset),
    }
});
