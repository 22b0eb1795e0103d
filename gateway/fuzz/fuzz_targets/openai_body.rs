//! `synco_gateway::fuzzing::openai_body` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synco_gateway::fuzzing::openai_body(data));
