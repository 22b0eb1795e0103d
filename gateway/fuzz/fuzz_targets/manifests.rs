//! `synco_gateway::fuzzing::manifests` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synco_gateway::fuzzing::manifests(data));
