#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pheromone_core::noise::fuzzing::fuzz_transport_decrypt(data));
