//! Metering: durable usage records ([`sink`]) and reading them back ([`export`]).

pub mod export;
pub mod sink;

pub use sink::{DbUsageSink, SinkOptions};
