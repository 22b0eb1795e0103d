//! The `synco-operator` binary: parses its flags and runs the library.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    synco_operator::cli::Args::parse_and_run().await
}
