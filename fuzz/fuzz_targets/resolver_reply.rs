//! Fuzz target: mimi_discovery::fuzzing::resolver_reply (see src/fuzzing.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mimi_discovery::fuzzing::resolver_reply(data);
});
