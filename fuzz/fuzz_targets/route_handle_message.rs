#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Instant;

// One origin for the whole run: the core never reads the clock, the harness does.
static START: OnceLock<Instant> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let start = *START.get_or_init(Instant::now);
    pheromone_core::route::fuzzing::fuzz_handle_message(start, data)
});
