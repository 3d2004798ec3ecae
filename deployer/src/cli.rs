//! Every command-line type.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  deployer deploy --stage prod        create or update everything in infra.toml
  deployer diff --stage prod          show what deploy would change, field by field
  deployer diff --stage prod --json   the same plan as JSON, for CI
  deployer outputs --stage prod       the function URL and other outputs (secrets masked)
  deployer remove --stage pr-42 --yes delete a stage (retained Neon data is kept)
  deployer prune --older-than 7d      remove preview stages whose branch expired or is old
  deployer migrate --stage prod       apply only the pending migrations (--dry-run lists them)
  deployer logs --stage prod -f       the function's logs, followed (secrets masked)
  deployer releases --stage prod      the releases, and which one is live
  deployer rollback --stage prod      serve the previous release again (one call)
  deployer dev                        local PostgreSQL + cargo lambda watch, no account needed
  deployer dev -- cargo test          any command with the links in its environment
  deployer unlock --stage prod        clear the lock left by an interrupted run
  deployer state list                 the stages and their resources
  deployer state migrate --to s3      move a stage's state to [state]'s S3 bucket

Stages: --stage, else DEPLOYER_STAGE, else your user name (a personal stage, as SST does).
Neon: NEON_API_KEY (environment or .env). AWS: the usual credential chain and AWS_REGION.
Exit codes: 0 ok, 1 a remote service failed, 2 bad input (nothing was changed).";

/// Deploys infra.toml: Neon Postgres resources and the api as an AWS Lambda function URL.
#[derive(Parser, Debug)]
#[command(name = "deployer", version, after_help = EXAMPLES)]
pub struct Cli {
    /// The app's infra.toml.
    #[arg(long, global = true, default_value = "infra.toml", value_name = "PATH")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or update the stage's resources (prints each change, then the outputs).
    Deploy(DeployArgs),
    /// Show what `deploy` would change, without changing anything.
    Diff(DiffArgs),
    /// Delete the stage's resources (Neon data is kept where removal = "retain").
    Remove(RemoveArgs),
    /// Print the stage's outputs.
    Outputs(OutputsArgs),
    /// Apply the stage's pending migrations only (the databases must be deployed).
    Migrate(MigrateArgs),
    /// Print the stage's function logs (CloudWatch Logs), secrets masked.
    Logs(LogsArgs),
    /// List the stage's releases (Lambda versions, each checked before it went out).
    Releases(ReleasesArgs),
    /// Point `live` at the previous release (or --to a version): one call, no build.
    Rollback(RollbackArgs),
    /// Run the api locally with the stage's links (a local PostgreSQL without NEON_API_KEY).
    Dev(DevArgs),
    /// Clear a stage's lock left by an interrupted run (shows its holder; a live one only
    /// with --force).
    Unlock(UnlockArgs),
    /// Read the live resources and show how they drifted from the stage's state; resources
    /// deleted outside the deployer are forgotten, so the next deploy creates them again.
    Refresh(RefreshArgs),
    /// Look at and repair what the deployer recorded (list, pull, push, migrate, rm).
    #[command(subcommand)]
    State(StateCommand),
    /// Remove preview stages (branch_from) whose Neon branch expired, or older than
    /// --older-than, and branches of this app that no stage records; lists them first.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Also prune preview branches created longer ago than this (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Never prune this stage (repeatable).
    #[arg(long, value_name = "STAGE")]
    pub keep: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// The app's stages and the resources each one recorded.
    List,
    /// Write a copy of a stage's state to a file (mode 0600: it holds passwords).
    Pull {
        #[command(flatten)]
        stage: StageArgs,
        /// The file (default: <stage>.state.json here).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Replace a stage's state with a file, under the stage's lock and fenced on the state
    /// it replaces; a copy older than the stage's state (a lower serial) is refused.
    Push {
        #[command(flatten)]
        stage: StageArgs,
        /// A state file, as `state pull` writes it.
        file: PathBuf,
    },
    /// Move a stage's state between `.deployer/` and the S3 bucket `[state]` names,
    /// refusing while the stage is locked or the destination already has a state.
    Migrate {
        #[command(flatten)]
        stage: StageArgs,
        /// Where to: "s3" or "local".
        #[arg(long, value_parser = ["s3", "local"])]
        to: String,
    },
    /// Forget one resource (one deleted by hand), leaving it untouched remotely.
    Rm {
        #[command(flatten)]
        stage: StageArgs,
        /// The resource's logical name in infra.toml.
        resource: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Remove the lock even though its holder looks alive (its lease is live). The holder's
    /// next state write is then refused, so nothing it does overwrites another run's work.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct StageArgs {
    /// The stage (default: DEPLOYER_STAGE, else your user name).
    #[arg(long, env = "DEPLOYER_STAGE")]
    pub stage: Option<String>,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// On a protected stage, allow deleting or replacing Neon resources.
    #[arg(long)]
    pub allow_data_loss: bool,
    /// Leave applied migrations whose file is gone alone, as sqlx's --ignore-missing.
    #[arg(long)]
    pub allow_missing: bool,
    /// On a protected stage, let a function URL made before releases move to the alias
    /// `live` (its hostname changes).
    #[arg(long)]
    pub allow_url_change: bool,
    /// How many independent steps may run at once (1: one after another, in plan order).
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

/// Enough for the widest graph infra.toml usually declares; Neon calls on one project are
/// serialized whatever this is.
pub const DEFAULT_CONCURRENCY: u16 = 8;

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Print the plan as JSON (for CI and pull-request comments); secrets are never included.
    #[arg(long)]
    pub json: bool,
    /// Instead of the plan: a preview stage's schema difference from its parent branch, per
    /// database (Neon's compare_schema), after its migrations ran.
    #[arg(long)]
    pub schema: bool,
}

#[derive(Args, Debug)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Print the drift as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct OutputsArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show passwords and connection strings instead of masking them.
    #[arg(long)]
    pub reveal: bool,
    /// In GitHub Actions: append url=, branch_id= and database_url= to $GITHUB_OUTPUT
    /// (the database URL masked in the log with ::add-mask::).
    #[arg(long, conflicts_with_all = ["json", "reveal"])]
    pub github_output: bool,
}

#[derive(Args, Debug)]
pub struct ReleasesArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// As JSON, by function.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// The release (version) to serve; default: the one before the live one.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// How far back: `30s`, `10m`, `2h`, `7d`.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub since: String,
    /// Keep printing new events as they arrive (every second), until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
    /// Only the events of this release (a Lambda version; `$LATEST` before releases).
    #[arg(long, value_name = "VERSION")]
    pub release: Option<String>,
    /// One JSON object per event.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Check the migrations against each database and list the pending ones; apply nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// On a protected stage, allow migrations that drop or rewrite data.
    #[arg(long)]
    pub allow_data_loss: bool,
    /// Leave applied migrations whose file is gone alone, as sqlx's --ignore-missing.
    #[arg(long)]
    pub allow_missing: bool,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Use a local PostgreSQL even when NEON_API_KEY is set.
    #[arg(long)]
    pub local: bool,
    /// Port for `cargo lambda watch`.
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Port for the local PostgreSQL.
    #[arg(long, default_value_t = 54329)]
    pub pg_port: u16,
    /// Run this command with the links in its environment instead of `cargo lambda watch`.
    #[arg(last = true)]
    pub command: Vec<String>,
}
