//! Builds a function's code with `cargo lambda build --release --output-format zip`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

/// A built function: the zip and its SHA-256 as Lambda reports it.
pub struct Artifact {
    pub zip: Vec<u8>,
    pub sha256_base64: String,
}

/// Builds `package` (its binary of the same name becomes `bootstrap`) for x86_64 or arm64.
/// `DEPLOYER_ARTIFACT_DIR` points at prebuilt zips (`<dir>/<package>/bootstrap.zip`) instead,
/// for machines that cannot cross-compile.
pub fn build(project_dir: &Path, package: &str, arm64: bool) -> Result<Artifact, String> {
    let path = match std::env::var_os("DEPLOYER_ARTIFACT_DIR") {
        Some(dir) => PathBuf::from(dir).join(package).join("bootstrap.zip"),
        None => {
            // cargo-lambda reads Cargo.toml from its working folder only: run it at the
            // root of the workspace that holds infra.toml.
            let root = workspace_root(project_dir)?;
            let mut cmd = Command::new("cargo");
            cmd.current_dir(&root).args([
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
                .map_err(|e| format!("cannot run `cargo lambda build`: {e}; install it with `pip install cargo-lambda ziglang`"))?;
            if !status.success() {
                return Err(format!(
                    "`cargo lambda build --package {package}` failed ({status}); its output is above"
                ));
            }
            target_dir(project_dir)?
                .join("lambda")
                .join(package)
                .join("bootstrap.zip")
        }
    };
    let zip = std::fs::read(&path)
        .map_err(|e| format!("cannot read the built zip `{}`: {e}", path.display()))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &zip);
    Ok(Artifact {
        sha256_base64: base64::engine::general_purpose::STANDARD.encode(digest.as_ref()),
        zip,
    })
}

/// The root folder of the cargo workspace around `dir`.
fn workspace_root(dir: &Path) -> Result<PathBuf, String> {
    let out = Command::new("cargo")
        .current_dir(dir)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .map_err(|e| format!("cannot run `cargo locate-project`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "infra.toml is not inside a cargo workspace ({}); hint: put it beside the workspace's Cargo.toml, or set DEPLOYER_ARTIFACT_DIR to prebuilt zips",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(manifest.parent().map(Path::to_owned).unwrap_or_default())
}

/// The workspace's target folder, as cargo reports it (infra.toml may sit anywhere in it).
fn target_dir(project_dir: &Path) -> Result<PathBuf, String> {
    let out = Command::new("cargo")
        .current_dir(project_dir)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cannot run `cargo metadata`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("`cargo metadata` printed no JSON: {e}"))?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "`cargo metadata` did not name the target folder".to_owned())
}
