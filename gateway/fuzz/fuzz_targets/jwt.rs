//! `synco_gateway::fuzzing::jwt` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synco_gateway::fuzzing::jwt(data));
