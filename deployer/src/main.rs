//! `deployer`: provisions what `infra.toml` declares (Neon project, branch, endpoint, role,
//! database; the api as a Lambda function URL) per stage. Being built: see issue 4.

use clap::Parser;

/// Deploys infra.toml: Neon Postgres resources and the api as an AWS Lambda function URL.
///
/// Coming: `deploy`, `diff`, `remove`, `outputs`, `dev` and `unlock`, per stage.
/// Until then, run the api locally with `scripts/dev`.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {}

fn main() {
    let _ = Args::parse();
    eprintln!(
        "deployer: no commands yet; see `deployer --help`. Run the api locally with `scripts/dev`."
    );
    std::process::exit(2);
}
