//! `synco-gateway`: parses arguments and hands over to the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    synco_gateway::cli::Cli::parse().run()
}
