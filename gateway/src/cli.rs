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
    Standalone(Box<StandaloneArgs>),
    /// Run in a Kubernetes cluster: serve the co-op in one namespace, following its
    /// resources through the API server.
    Cluster(Box<ClusterArgs>),
    /// Write a tiny random-weight model folder, chat or embedding (for offline trials
    /// and tests).
    TinyModel(TinyModelArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Export usage, customers' statements and surplus revenue.
    #[command(subcommand)]
    Usage(UsageCommand),
    /// The co-op's books: post top-ups, costs and contributions, close a month, list
    /// and verify the ledger.
    #[command(subcommand)]
    Books(BooksCommand),
    /// The co-op's governance, for administrators and scripts: proposals, ballots,
    /// comments and delegations (acting as a member with --as), results, and the recount
    /// of a published record.
    Governance(GovernanceArgs),
    /// Federation with peer co-ops: make the co-op's signing key, and read the
    /// settlement ledger with a peer.
    #[command(subcommand)]
    Federation(FederationCommand),
    /// The governance assistant: score a model on the discussions kept in the
    /// repository before adopting it.
    #[command(subcommand)]
    Assistant(AssistantCommand),
}

#[derive(Debug, Subcommand)]
pub enum AssistantCommand {
    /// Scores a model folder (run in process) as the assistant: citation validity of
    /// its summaries, schema validity of its drafts, summary length. Prints a table
    /// and the scores as JSON.
    Eval {
        /// The model folder (`config.json`, weights, `tokenizer.json`).
        #[arg(long)]
        model: PathBuf,
        /// The discussions (`*.json`).
        #[arg(long, default_value = "gateway/assistant-eval")]
        discussions: PathBuf,
    },
    /// Drafts a new co-op's bylaws (a Cooperative manifest) from the founders' answers
    /// to a short questionnaire (YAML: name, displayName, classes with who is in each,
    /// decisions and surplus in plain words, currency), with a model folder run in
    /// process. Prints the manifest, labelled AI-written, for the founders to review.
    Bylaws {
        /// The model folder (`config.json`, weights, `tokenizer.json`).
        #[arg(long)]
        model: PathBuf,
        /// The answers (YAML).
        #[arg(long)]
        answers: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Write a new Ed25519 signing key (PKCS#8 PEM) and print its public key, which peer
    /// co-ops put in their bylaws (`publicKey`).
    Keygen {
        /// Where to write the key (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a signing key.
    PublicKey {
        #[arg(long)]
        key: PathBuf,
    },
    /// The ledger with a peer for a month, as JSON: tokens lent and borrowed and their
    /// cost under the bylaws' price.
    Settlement {
        #[arg(long)]
        peer: String,
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Every federated request with a peer in a month, one JSON object a line (request
    /// id, direction, tokens, cost), to compare record by record with the peer's.
    Records {
        #[arg(long)]
        peer: String,
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Federation with peer co-ops (on with a signing key).
#[derive(Debug, Clone, Args)]
pub struct FederationArgs {
    /// The co-op's Ed25519 signing key (`synco-gateway federation keygen`): turns on the
    /// federation endpoints and overflow to the peers in the bylaws.
    #[arg(long, env = "SYNCO_FEDERATION_KEY")]
    pub federation_key: Option<PathBuf>,
    /// Milliseconds between catalogue exchanges with each peer (a failed peer is tried
    /// again at the next one).
    #[arg(long, env = "SYNCO_FEDERATION_EXCHANGE_MS", default_value_t = 5000)]
    pub federation_exchange_ms: u64,
    /// Milliseconds a member's request waits for a local slot before it goes to a peer
    /// that serves the model.
    #[arg(long, env = "SYNCO_FEDERATION_OVERFLOW_AFTER_MS", default_value_t = 2000)]
    pub federation_overflow_after_ms: u64,
}

/// Where governance state is: the database (standalone mode, the default), or the API
/// server with --namespace (cluster mode, with the kubeconfig's credentials).
#[derive(Debug, Clone, Args)]
pub struct GovernanceArgs {
    /// The database, or `--namespace` to work on the co-op in that Kubernetes namespace
    /// instead.
    #[command(flatten)]
    pub db: DbArgs,
    #[command(subcommand)]
    pub command: GovernanceCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum GovernanceCommand {
    /// List proposals (JSON).
    List {
        /// Only this phase (Open, Applied, ...).
        #[arg(long)]
        phase: Option<String>,
    },
    /// Show one proposal with its result (JSON).
    Show { name: String },
    /// Open a proposal for a member, from a YAML or JSON file of its fields (kind, title,
    /// body, options, effect, split; as `POST /v1/governance/proposals` takes).
    Propose {
        /// The member who proposes.
        #[arg(long = "as")]
        member: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Cast a member's ballot.
    Vote {
        name: String,
        #[arg(long = "as")]
        member: String,
        /// Yes, No, Abstain, Block or StandAside.
        #[arg(long)]
        position: Option<String>,
        /// Approval: the options approved, comma-separated.
        #[arg(long, value_delimiter = ',')]
        approve: Option<Vec<String>>,
        /// Ranked choice: the options, best first, comma-separated.
        #[arg(long, value_delimiter = ',')]
        rank: Option<Vec<String>>,
        /// Score: option=score, comma-separated.
        #[arg(long, value_delimiter = ',')]
        score: Option<Vec<String>>,
        /// Dot voting: option=points, comma-separated.
        #[arg(long, value_delimiter = ',')]
        points: Option<Vec<String>>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Comment on a proposal (or reply to a comment) as a member.
    Comment {
        name: String,
        #[arg(long = "as")]
        member: String,
        #[arg(long)]
        text: String,
        #[arg(long)]
        reply_to: Option<i64>,
    },
    /// Withdraw a member's proposal (before any ballot).
    Withdraw {
        name: String,
        #[arg(long = "as")]
        member: String,
    },
    /// Set or revoke a member's standing delegation.
    Delegate {
        #[arg(long = "as")]
        member: String,
        /// The member whose ballot counts for this one.
        #[arg(long, conflicts_with = "revoke", required_unless_present = "revoke")]
        to: Option<String>,
        #[arg(long)]
        revoke: bool,
    },
    /// Write a decided proposal's published record (JSON) to stdout or --out.
    Export {
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Recount a published record and print the outcome and fingerprint; exits 1 if
    /// they differ from what was recorded or a receipt does not match.
    Verify { file: PathBuf },
    /// Close every proposal whose deadline has passed, now (standalone mode; the
    /// running gateway does this by itself).
    CloseDue,
    /// Suspend a member (standalone mode; in a cluster, edit the Member).
    Suspend { member: String },
    /// Reinstate a suspended member (standalone mode).
    Reinstate { member: String },
}

/// Where the database is (shared by the admin commands).
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Where the SQLite database lives (when --database-url is not set).
    #[arg(long, env = "SYNCO_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// A database URL (`postgres://user@host:port/db` or `sqlite://path?mode=rwc`);
    /// default: SQLite in the data directory.
    #[arg(long, env = "SYNCO_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Cluster mode: the co-op's namespace. The co-op's objects (its members, rate card
    /// and bylaws; governance for `governance`) are then read from the API server (the
    /// kubeconfig's, or the pod's ServiceAccount) instead of the database.
    #[arg(long, env = "SYNCO_NAMESPACE", global = true)]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for a Member or Customer; prints it once.
    Create {
        /// The Member's name.
        #[arg(long, conflicts_with = "customer", required_unless_present = "customer")]
        member: Option<String>,
        /// The Customer's name.
        #[arg(long)]
        customer: Option<String>,
        /// A note to tell keys apart.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List keys (prefix, owner, created, revoked).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by its prefix (the 8 characters after `sk-synco-`).
    Revoke {
        prefix: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Usage per caller for a month, as CSV.
    Export {
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A customer's statement for a month, as JSON.
    Statement {
        #[arg(long)]
        customer: String,
        #[arg(long)]
        month: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The co-op's surplus revenue for a month, as CSV.
    Revenue {
        #[arg(long)]
        month: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BooksCommand {
    /// Post a customer's prepaid top-up (minor units, such as cents).
    Topup {
        #[arg(long)]
        customer: String,
        #[arg(long)]
        minor: u32,
        #[arg(long, default_value = "prepaid top-up")]
        memo: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Post a cost the co-op bore (minor units).
    Cost {
        #[arg(long)]
        minor: u32,
        #[arg(long)]
        memo: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Post a member's contribution of capacity, in GPU-hours.
    Contribution {
        #[arg(long)]
        member: String,
        #[arg(long)]
        gpu_hours: u32,
        #[arg(long, default_value = "GPU-hours of contributed nodes")]
        memo: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Post a correction (signed minor units) to an account, in the open period.
    Correction {
        #[arg(long)]
        account: String,
        #[arg(long, allow_hyphen_values = true)]
        minor: i32,
        #[arg(long)]
        memo: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Close a month that has ended: post its charges and usage, then lock it.
    Close {
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A member's or a customer's statement for a month, as JSON (or CSV with --csv).
    Statement {
        /// The member or customer.
        #[arg(long)]
        account: String,
        #[arg(long)]
        month: String,
        /// The entries as CSV instead of the statement as JSON.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The patronage refunds of a closed month, as JSON: each member's refund in
    /// proportion to its usage, its contribution or a mix (`mix:U:C`, U parts usage to
    /// C parts contribution), split into cash and retained. With no rules given, the
    /// bylaws' rules (what a PatronageDistribution proposal carries); with any, a what-if
    /// under those (the rest default to usage, 20% cash, surplus to the reserve).
    Patronage {
        #[arg(long)]
        month: String,
        /// `usage`, `contribution` or `mix:U:C`.
        #[arg(long)]
        basis: Option<String>,
        /// The cash share of each refund (percent, at least 20).
        #[arg(long)]
        cash_percent: Option<u32>,
        /// Where customers' (non-member) income goes: `pool` or `reserve`.
        #[arg(long)]
        surplus_to: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A month's entries, as CSV.
    Entries {
        #[arg(long)]
        month: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Check the ledger's hash chain; names the first entry that does not hold.
    Verify {
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Flags shared by the serving commands.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port; see --port-file).
    #[arg(long, env = "SYNCO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Share the port with other processes of the same user (`SO_REUSEPORT`): for
    /// replicas on one node's network, whose rolling update overlaps old and new.
    /// Never give two co-ops' gateways the same port with it.
    #[arg(long, env = "SYNCO_REUSE_PORT")]
    pub reuse_port: bool,
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
    /// Seconds a member stays signed in on the web pages (`/governance`).
    #[arg(long, env = "SYNCO_WEB_SESSION_SECONDS", default_value_t = 8 * 3600)]
    pub web_session_seconds: u64,
    /// Seconds shutdown waits for the usage buffer to reach the database; past it the
    /// gateway exits with an error that says how many records were not written.
    #[arg(long, env = "SYNCO_USAGE_FLUSH_SECONDS", default_value_t = 30)]
    pub usage_flush_seconds: u64,
    /// Seconds a request for one of the co-op's models with no replica ready yet
    /// (scaling up from zero) waits for one; past it, a 503 with Retry-After.
    #[arg(long, env = "SYNCO_WAITING_ROOM_SECONDS", default_value_t = 60)]
    pub waiting_room_seconds: u64,
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
    /// Allocation, Delegation, Proposal), such as crds/examples. They found the co-op in
    /// the database on the first start; after that the database is the truth.
    #[arg(long, env = "SYNCO_MANIFESTS")]
    pub manifests: PathBuf,
    /// Where the SQLite database (and a generated tiny model) live.
    #[arg(long, env = "SYNCO_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Keep metering and budgets in this database instead (`postgres://...`): replicas
    /// sharing one Postgres enforce one budget.
    #[arg(long, env = "SYNCO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub quota: QuotaArgs,
    #[command(flatten)]
    pub federation: FederationArgs,
    /// Serve a tiny random-weight model (generated into the data directory) in place of
    /// every in-process model's configured source: works offline, answers noise.
    #[arg(long, env = "SYNCO_TINY_MODEL", default_value_t = false)]
    pub tiny_model: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// The co-op namespace served (its Cooperative, Members, Customers,
    /// InferenceModels and Allocations).
    #[arg(long, env = "SYNCO_NAMESPACE")]
    pub namespace: String,
    /// The metering and budget database (`postgres://...`; `sqlite://...` for a
    /// single replica).
    #[arg(long, env = "SYNCO_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// This pod's name, for logs.
    #[arg(long, env = "SYNCO_POD_NAME")]
    pub pod_name: Option<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub quota: QuotaArgs,
    #[command(flatten)]
    pub federation: FederationArgs,
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
    /// Write an embedding model (Qwen3-Embedding architecture, sentence-transformers
    /// layout) instead of a chat model.
    #[arg(long)]
    pub embedding: bool,
}

/// JWT settings (API keys need none).
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// Seconds an API key, once checked against the database, is trusted without
    /// asking again: the longest a revocation takes to reach this replica. While the
    /// database cannot be reached, keys seen before keep their last known state.
    #[arg(long, env = "SYNCO_KEY_CACHE_SECONDS", default_value_t = 5)]
    pub key_cache_seconds: u64,
    /// Accept HS256 tokens signed with this secret (standalone mode).
    #[arg(long, env = "SYNCO_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,
    /// Accept RS256/ES256/EdDSA tokens signed by a key in this JWKS file.
    #[arg(long, env = "SYNCO_JWKS_FILE", conflicts_with = "jwt_hs256_secret")]
    pub jwks_file: Option<PathBuf>,
    /// ... or in the JWKS at this URL (refreshed every five minutes).
    #[arg(long, env = "SYNCO_JWKS_URL", conflicts_with_all = ["jwt_hs256_secret", "jwks_file"])]
    pub jwks_url: Option<String>,
    /// Required `iss` of tokens.
    #[arg(long, env = "SYNCO_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens.
    #[arg(long, env = "SYNCO_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Turns on the admin API (`/admin/v1/...`: top-ups, statements, the ledger's check)
    /// for the bearer token whose SHA-256 this is, in hex (`printf %s "$TOKEN" |
    /// sha256sum`); the token itself is never given to the gateway.
    #[arg(long, env = "SYNCO_ADMIN_TOKEN_SHA256")]
    pub admin_token_sha256: Option<String>,
}

/// Quota, priority and metering settings.
#[derive(Debug, Clone, Args)]
pub struct QuotaArgs {
    /// The most requests each engine is given at once. The limit in use is measured
    /// from the engine's time per token (it starts at one and grows while the engine
    /// keeps its speed); requests beyond it queue by tier and, within a tier, by tokens
    /// served.
    #[arg(long, env = "SYNCO_ENGINE_SLOTS", default_value_t = 32)]
    pub engine_slots: usize,
    /// Seconds a customer waits for surplus capacity before a 429.
    #[arg(long, env = "SYNCO_CUSTOMER_WAIT_SECONDS", default_value_t = 5)]
    pub customer_wait_seconds: u64,
    /// Completion tokens reserved, and enforced, when a request sets no max_tokens.
    #[arg(long, env = "SYNCO_DEFAULT_MAX_TOKENS", default_value_t = 1024)]
    pub default_max_tokens: u64,
    /// Units of budget a replica leases from the database at a time (the worst-case
    /// budget a crashed replica strands).
    #[arg(long, env = "SYNCO_BUDGET_SLICE", default_value_t = 10_000)]
    pub budget_slice: u64,
    /// Seconds a request whose worst case does not fit in the budget waits for the
    /// replica's requests in flight to settle (they usually use less than they
    /// reserved) before a 429.
    #[arg(long, env = "SYNCO_BUDGET_WAIT_SECONDS", default_value_t = 10)]
    pub budget_wait_seconds: u64,
    /// Usage records buffered at most before requests wait (the most a kill -9 loses).
    #[arg(long, env = "SYNCO_USAGE_BUFFER", default_value_t = 1024)]
    pub usage_buffer: usize,
    /// Replace the Allocation's monthly token budget of a caller: `name=tokens`,
    /// repeatable or comma-separated. For trials and tests only: a real budget is a
    /// rate times a month, far more tokens than a trial sends.
    #[arg(long, env = "SYNCO_TOKEN_BUDGETS", value_delimiter = ',')]
    pub token_budget: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's arguments are well formed (clap checks them only when that
    /// subcommand runs).
    #[test]
    fn the_cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
