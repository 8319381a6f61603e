#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pheromone_core::yamux::fuzzing::fuzz_session_input(data));
