//! `synco_gateway::fuzzing::sse_stream` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synco_gateway::fuzzing::sse_stream(data));
