//! Command-line arguments. Every flag can also be set from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Synco's gateway: the co-op's OpenAI-compatible API.
#[derive(Debug, Parser)]
#[command(name = "synco-gateway", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the models listed in a config file.
    Serve(ServeArgs),
    /// Run alone, with no cluster: read the co-op's manifests from a folder, keep
    /// state in SQLite, serve the models in-process.
    Standalone(StandaloneArgs),
    /// Write a tiny random-weight Llama model folder (for offline trials and tests).
    TinyModel(TinyModelArgs),
}

/// Flags shared by the serving commands.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port; see --port-file).
    #[arg(long, env = "SYNCO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Write the address actually bound to this file once listening.
    #[arg(long, env = "SYNCO_PORT_FILE")]
    pub port_file: Option<PathBuf>,
    /// Seconds to let in-flight requests and streams finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SYNCO_GRACE_PERIOD_SECONDS", default_value_t = 30)]
    pub grace_period_seconds: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SYNCO_BODY_LIMIT_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub body_limit_bytes: usize,
    /// Seconds between SSE keep-alive comments.
    #[arg(long, env = "SYNCO_SSE_KEEP_ALIVE_SECONDS", default_value_t = 15)]
    pub keep_alive_seconds: u64,
    /// OTLP/HTTP collector endpoint (such as http://otel-collector:4318); traces are
    /// exported only when set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "SYNCO_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// Run embedded models on the CPU even when built with CUDA.
    #[arg(long, env = "SYNCO_FORCE_CPU", default_value_t = false)]
    pub force_cpu: bool,
    /// Sequences the embedded engine schedules at once.
    #[arg(long, env = "SYNCO_MAX_SEQS", default_value_t = 32)]
    pub max_seqs: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// YAML file listing the models and their engines.
    #[arg(long, env = "SYNCO_CONFIG")]
    pub config: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    /// Folder of co-op manifests (Cooperative, Member, Customer, InferenceModel,
    /// Allocation), such as crds/examples.
    #[arg(long, env = "SYNCO_MANIFESTS")]
    pub manifests: PathBuf,
    /// Where the SQLite database (and a generated tiny model) live.
    #[arg(long, env = "SYNCO_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Serve a tiny random-weight model (generated into the data directory) in place of
    /// every in-process model's configured source: works offline, answers noise.
    #[arg(long, env = "SYNCO_TINY_MODEL", default_value_t = false)]
    pub tiny_model: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TinyModelArgs {
    /// Folder to write (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}
