//! The Synco gateway: the co-op's OpenAI-compatible data plane.
//!
//! - [`app`]: the shared state; [`router`]: the routes as data; [`routes`]: the
//!   handlers; [`sse`]: streaming.
//! - [`error`]: the one `ApiError` and the JSON extractor.
//! - [`engine`]: the `Engine` trait, the embedded mistral.rs engine and the external
//!   OpenAI-compatible engine.
//! - [`auth`]: API keys and JWTs; [`coop`]: the co-op's callers, access, quotas and prices.
//! - [`admission`], [`quota`]: quota and priority admission; [`usage`], [`metering`]:
//!   durable usage records and their export.
//! - [`governance`]: proposals, ballots, comments and delegations over the database
//!   (standalone) or the API server (cluster), with the `synco-policies` lifecycle.
//! - [`standalone`], [`cluster`]: where the co-op's resources come from (a folder and
//!   the database, or the API server); [`follow`]: keeping up with their changes;
//!   [`db`]: the database (SQLite or Postgres).
//! - [`federation`]: peer co-ops lending each other capacity (tokens, catalogue
//!   exchange, overflow, the settlement ledger).
//! - [`admin`]: the `keys` and `usage` commands.
//! - [`tiny_model`]: a random-weight model folder for offline use.

pub mod admin;
pub mod admission;
pub mod app;
pub mod auth;
pub mod books;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod coop;
pub mod db;
pub mod engine;
pub mod error;
pub mod federation;
pub mod follow;
pub mod fuzzing;
pub mod governance;
pub mod metering;
pub mod mock_upstream;
pub mod openai;
pub mod quota;
pub mod router;
pub mod routes;
pub mod server;
pub mod sse;
pub mod standalone;
pub mod telemetry;
pub mod tiny_model;
pub mod usage;
pub mod web;

use cli::{Cli, Command};
use telemetry::{Telemetry, TelemetryOptions};

impl Cli {
    /// Runs the chosen command; telemetry is flushed after the server has stopped.
    pub fn run(self) -> anyhow::Result<()> {
        let options = match &self.command {
            Command::Serve(a) => server_telemetry(&a.server),
            Command::Standalone(a) => server_telemetry(&a.server),
            Command::Cluster(a) => server_telemetry(&a.server),
            Command::TinyModel(_)
            | Command::Keys(_)
            | Command::Usage(_)
            | Command::Books(_)
            | Command::Governance(_)
            | Command::Federation(_)
            | Command::Assistant(_) => TelemetryOptions::default(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async move {
            let telemetry = Telemetry::init(&options)?;
            let result = match self.command {
                Command::Serve(args) => server::run_serve(args).await,
                Command::Standalone(args) => server::run_standalone(*args).await,
                Command::Cluster(args) => cluster::run(*args).await,
                Command::TinyModel(args) => server::run_tiny_model(&args),
                Command::Keys(command) => admin::keys(command).await,
                Command::Usage(command) => admin::usage(command).await,
                Command::Books(command) => admin::books(command).await,
                Command::Governance(args) => governance::cli::run(args).await,
                Command::Federation(command) => admin::federation(command).await,
                Command::Assistant(command) => admin::assistant(command).await,
            };
            if let Err(e) = &result {
                tracing::error!("{e:#}");
            }
            telemetry.shutdown();
            result
        })
    }
}

fn server_telemetry(args: &cli::ServerArgs) -> TelemetryOptions {
    TelemetryOptions {
        otlp_endpoint: args.otlp_endpoint.clone(),
        json_logs: args.log_json,
    }
}
