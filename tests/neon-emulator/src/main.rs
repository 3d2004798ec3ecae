//! `neon-emulator`: serves the Neon API v2 emulation until interrupted. Prints its base URL
//! (`http://127.0.0.1:<port>/api/v2`) as the first line of stdout once it accepts requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use neon_emulator::faults::{RandomFaults, ScriptedFault};
use neon_emulator::{Emulator, EmulatorConfig, TlsPem};

/// An emulator of the Neon API v2 over real PostgreSQL servers (one per branch, started
/// with the `initdb`/`pg_ctl` on PATH), for tests and offline work.
///
/// Examples:
///   neon-emulator --api-key test
///   neon-emulator --api-key test --tls-cert server.crt --tls-key server.key
///   neon-emulator --api-key test --operation-delay-ms 300 \
///       --fault-rate 0.2 --fault-seed 7 --fail "POST /projects/*/branches 503 x2"
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Certificate (PEM) every branch's server serves TLS with; needs `--tls-key`.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Folder for the branches' servers (default: the system's temporary folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The API key clients must send as a bearer token.
    #[arg(long, env = "NEON_EMULATOR_API_KEY", hide_env_values = true)]
    api_key: String,
    /// How long each operation stays `running` (the project answers 423 meanwhile).
    #[arg(long, default_value_t = 0)]
    operation_delay_ms: u64,
    /// The plan's limit on `history_retention_seconds` (Neon's Free plan allows 21600).
    #[arg(long, default_value_t = 21_600)]
    max_history_retention_seconds: i64,
    /// Share of API calls that fail with an injected fault (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Seed for choosing which calls fail.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Statuses injected faults use, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "429,500,503")]
    fault_statuses: Vec<u16>,
    /// Share of injected 5xx on mutating calls answered after the change was applied.
    #[arg(long, default_value_t = 0.0)]
    fault_applied_share: f64,
    /// Fail the next calls matching METHOD PATH with STATUS, e.g. "POST /projects 503 x2"
    /// (PATH is relative to /api/v2; `*` matches one segment). Repeatable.
    #[arg(long = "fail", value_name = "METHOD PATH STATUS [xN]")]
    fail: Vec<ScriptedFault>,
    /// Act as a personal API key of an organization member: listing or creating projects
    /// without `org_id` answers 400, as Neon does.
    #[arg(long)]
    require_org_id: bool,
    /// Append every request to this file as a JSON line.
    #[arg(long)]
    request_log: Option<PathBuf>,
    /// Neon's OpenAPI document (default: shared/neon-api/openapi.json beside the repository).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Seed for IDs and passwords (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fault_rate) || !(0.0..=1.0).contains(&args.fault_applied_share) {
        eprintln!("error: `--fault-rate` and `--fault-applied-share` must be between 0 and 1");
        return ExitCode::from(2);
    }
    let mut config = EmulatorConfig::new(args.api_key);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("error: cannot read `{}`: {e}", path.display()))
        };
        match (read(cert), read(key)) {
            (Ok(cert), Ok(key)) => config.tls = Some(TlsPem { cert, key }),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    config.data_dir = args.data_dir;
    config.listen = args.listen;
    config.operation_delay = Duration::from_millis(args.operation_delay_ms);
    config.max_history_retention_seconds = args.max_history_retention_seconds;
    config.random_faults = RandomFaults {
        rate: args.fault_rate,
        seed: args.fault_seed,
        statuses: args.fault_statuses,
        applied_share: args.fault_applied_share,
    };
    config.scripted_faults = args.fail;
    config.require_org_id = args.require_org_id;
    config.request_log = args.request_log;
    config.seed = args.seed;
    if let Some(spec) = args.spec {
        config.spec_path = spec;
    }

    let emulator = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", pgconn::Chain(&e));
            return ExitCode::from(2);
        }
    };
    println!("{}", emulator.base_url());
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match &mut terminate { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    emulator.shut_down().await;
    ExitCode::SUCCESS
}
