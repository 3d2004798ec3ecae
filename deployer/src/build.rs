//! Builds a function's code with `cargo lambda build --release --output-format zip`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

/// A built function: the zip and its SHA-256 as Lambda reports it.
#[derive(Debug)]
pub struct Artifact {
    pub zip: Vec<u8>,
    pub sha256_base64: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot run `{command}`")]
    Spawn {
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("infra.toml is not inside a cargo workspace")]
    NoWorkspace(#[source] Stderr),
    #[error("`cargo lambda build --package {package}` failed ({status}); its output is above")]
    Failed {
        package: String,
        status: std::process::ExitStatus,
    },
    #[error("`cargo metadata` printed something other than its JSON")]
    Metadata(#[source] serde_json::Error),
    #[error("cannot read the built zip `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a failed command printed on stderr.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Stderr(String);

impl BuildError {
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Spawn {
                command: "cargo lambda build",
                ..
            } => Some("install it with `pip install cargo-lambda ziglang`".to_owned()),
            BuildError::NoWorkspace(_) => Some(
                "put infra.toml beside the workspace's Cargo.toml, or set DEPLOYER_ARTIFACT_DIR to prebuilt zips"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// The two fields of `cargo metadata` the build needs.
#[derive(serde::Deserialize)]
struct Metadata {
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

/// Builds `package` (its binary of the same name becomes `bootstrap`) for x86_64 or arm64.
/// `DEPLOYER_ARTIFACT_DIR` points at prebuilt zips (`<dir>/<package>/bootstrap.zip`) instead,
/// for machines that cannot cross-compile. Blocking: call it off the async threads.
pub fn build(project_dir: &Path, package: &str, arm64: bool) -> Result<Artifact, BuildError> {
    let path = match std::env::var_os("DEPLOYER_ARTIFACT_DIR") {
        Some(dir) => PathBuf::from(dir).join(package).join("bootstrap.zip"),
        None => {
            let meta = metadata(project_dir)?;
            // cargo-lambda reads Cargo.toml from its working folder only: run it at the
            // root of the workspace that holds infra.toml.
            let mut cmd = Command::new("cargo");
            cmd.current_dir(&meta.workspace_root).args([
                "lambda",
                "build",
                "--release",
                "--output-format",
                "zip",
                "--package",
                package,
                "--bin",
                package,
            ]);
            if arm64 {
                cmd.arg("--arm64");
            }
            // Build output goes to our stderr, so stdout stays the deploy's report.
            let status = cmd
                .stdout(std::process::Stdio::from(std::io::stderr()))
                .status()
                .map_err(|source| BuildError::Spawn {
                    command: "cargo lambda build",
                    source,
                })?;
            if !status.success() {
                return Err(BuildError::Failed {
                    package: package.to_owned(),
                    status,
                });
            }
            meta.target_directory
                .join("lambda")
                .join(package)
                .join("bootstrap.zip")
        }
    };
    let zip = std::fs::read(&path).map_err(|source| BuildError::Read { path, source })?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &zip);
    Ok(Artifact {
        sha256_base64: base64::engine::general_purpose::STANDARD.encode(digest.as_ref()),
        zip,
    })
}

/// The workspace around `dir` and its target folder, as cargo reports them.
fn metadata(dir: &Path) -> Result<Metadata, BuildError> {
    let out = Command::new("cargo")
        .current_dir(dir)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|source| BuildError::Spawn {
            command: "cargo metadata",
            source,
        })?;
    if !out.status.success() {
        return Err(BuildError::NoWorkspace(Stderr(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(BuildError::Metadata)
}
