//! `synco_gateway::fuzzing::governance` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synco_gateway::fuzzing::governance(data));
