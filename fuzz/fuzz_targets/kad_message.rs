#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pheromone_core::kad::fuzzing::fuzz_decode(data);
    pheromone_core::kad::fuzzing::fuzz_state(std::time::Instant::now(), data);
});
