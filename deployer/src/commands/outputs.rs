//! `deployer outputs`: what the last deploy produced, secrets masked unless `--reveal`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::OutputsArgs;
use crate::error::Failure;

pub async fn run(config_path: &Path, args: &OutputsArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (_, config) = super::load(config_path, &stage)?;
    let store = super::store_to_read(&config).await?;
    let state = super::load_state(&store, &config, &stage).await?;
    if state.resources.is_empty() {
        return Err(
            Failure::bad_input(format!("stage `{stage}` has not been deployed"))
                .hint(format!("deployer deploy --stage {stage}")),
        );
    }
    if args.json {
        let mut all = BTreeMap::new();
        for (name, r) in &state.resources {
            let outputs: BTreeMap<&String, String> = r
                .outputs
                .iter()
                .map(|(k, v)| {
                    let shown = if r.kind.is_secret(k) && !args.reveal {
                        crate::output::mask(v)
                    } else {
                        v.clone()
                    };
                    (k, shown)
                })
                .collect();
            all.insert(name, outputs);
        }
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        super::print_outputs(&state, args.reveal);
    }
    Ok(())
}
