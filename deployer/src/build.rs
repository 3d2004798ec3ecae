//! Builds a function's code: `cargo lambda build --release --output-format binary` for the
//! declared architecture (`--x86-64` or `--arm64`, always: without a flag cargo-lambda builds
//! for the host, and an arm64 laptop would ship an arm64 binary to an x86_64 function), then
//! a reproducible zip of it ([`crate::lambda_zip`]). The binary's ELF header must match the
//! architecture, and the code must fit Lambda's limits: 250 MB unzipped, and 50 MB zipped
//! for a direct upload, above which it goes through the S3 state bucket (a stage with local
//! state is refused instead). Prebuilt code is checked before any AWS call.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::lambda_zip::{self, Machine, ZipError};

/// Lambda's limit on a zip uploaded directly with the call (`ZipFile`), per its quotas page.
pub const DIRECT_UPLOAD_LIMIT_BYTES: usize = 50 * 1024 * 1024;

/// Above this a zip goes through S3: the direct limit counts the whole request (the zip's
/// base64 in the JSON, beside the environment and the rest), so some room is left.
pub const DIRECT_UPLOAD_SWITCH_BYTES: usize = DIRECT_UPLOAD_LIMIT_BYTES - 64 * 1024;

/// Lambda's limit on the code unzipped (its quotas page: 250 MB), however it is uploaded.
pub const UNZIPPED_LIMIT_BYTES: usize = 262_144_000;

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
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the function's code in `{}`", path.display())]
    Zip {
        path: PathBuf,
        #[source]
        source: ZipError,
    },
    #[error("`{}` is built for {}, but infra.toml declares architecture = \"{wanted}\"", path.display(), found.label())]
    Architecture {
        path: PathBuf,
        found: Machine,
        wanted: &'static str,
    },
    #[error(
        "the zip for `{package}` is {size} bytes; Lambda takes at most {DIRECT_UPLOAD_LIMIT_BYTES} bytes uploaded directly"
    )]
    TooLarge { package: String, size: usize },
    #[error(
        "the code for `{package}` is {size} bytes unzipped; Lambda takes at most {UNZIPPED_LIMIT_BYTES}"
    )]
    TooLargeUnzipped { package: String, size: usize },
}

/// What a failed command printed on stderr.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Stderr(String);

impl BuildError {
    /// The user's input is at fault (a prebuilt binary, the code's size), not the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            BuildError::Zip { .. }
                | BuildError::Architecture { .. }
                | BuildError::TooLarge { .. }
                | BuildError::TooLargeUnzipped { .. }
        )
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Architecture { wanted, .. } => Some(format!(
                "build it with `cargo lambda build --release {}`, or change `architecture` in infra.toml",
                if *wanted == "arm64" { "--arm64" } else { "--x86-64" }
            )),
            BuildError::TooLarge { .. } => Some(
                "keep the state in S3 ([state] backend = \"s3\"), and the deployer uploads larger code through the state bucket; or make the binary smaller (release profile with strip = true, lto, fewer dependencies)".to_owned(),
            ),
            BuildError::TooLargeUnzipped { .. } => Some(
                "make the binary smaller (release profile with strip = true, lto, fewer dependencies)".to_owned(),
            ),
            BuildError::Zip { .. } => Some(
                "DEPLOYER_ARTIFACT_DIR must hold <package>/bootstrap (the executable) or <package>/bootstrap.zip with `bootstrap` at its top".to_owned(),
            ),
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
/// `DEPLOYER_ARTIFACT_DIR` points at prebuilt code instead, for machines that cannot
/// cross-compile: `<dir>/<package>/bootstrap` (zipped here, reproducibly) or
/// `<dir>/<package>/bootstrap.zip` (used as it is). Blocking: call it off the async threads.
///
/// `via_s3`: code over the direct-upload limit can go through S3 (the stage's state is
/// there), so only Lambda's unzipped limit applies.
pub fn build(
    project_dir: &Path,
    package: &str,
    arm64: bool,
    via_s3: bool,
) -> Result<Artifact, BuildError> {
    let wanted = if arm64 {
        Machine::Aarch64
    } else {
        Machine::X86_64
    };
    let binary = match std::env::var_os("DEPLOYER_ARTIFACT_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir).join(package);
            let zip_path = dir.join("bootstrap.zip");
            if !dir.join("bootstrap").exists() && zip_path.exists() {
                let zip = read(&zip_path)?;
                check_size(package, &zip, None, via_s3)?;
                let head =
                    lambda_zip::bootstrap_head(&zip, 64).map_err(|source| BuildError::Zip {
                        path: zip_path.clone(),
                        source,
                    })?;
                check_machine(&zip_path, &head, wanted)?;
                return Ok(Artifact::new(zip));
            }
            dir.join("bootstrap")
        }
        None => cargo_lambda_build(project_dir, package, arm64)?,
    };
    let bytes = read(&binary)?;
    check_machine(&binary, &bytes, wanted)?;
    let zip = lambda_zip::zip_bootstrap(&bytes);
    check_size(package, &zip, Some(bytes.len()), via_s3)?;
    Ok(Artifact::new(zip))
}

/// The cheap part of [`build`] for prebuilt code (`DEPLOYER_ARTIFACT_DIR`): the binary's
/// ELF header, or a prebuilt zip's size and its `bootstrap`'s header. Reads no more than it
/// must, so a deploy can check it before starting anything.
pub fn check_prebuilt(package: &str, arm64: bool, via_s3: bool) -> Result<(), BuildError> {
    let Some(dir) = std::env::var_os("DEPLOYER_ARTIFACT_DIR") else {
        return Ok(());
    };
    let wanted = if arm64 {
        Machine::Aarch64
    } else {
        Machine::X86_64
    };
    let dir = PathBuf::from(dir).join(package);
    let binary = dir.join("bootstrap");
    let zip_path = dir.join("bootstrap.zip");
    if !binary.exists() && zip_path.exists() {
        let zip = read(&zip_path)?;
        check_size(package, &zip, None, via_s3)?;
        let head = lambda_zip::bootstrap_head(&zip, 64).map_err(|source| BuildError::Zip {
            path: zip_path.clone(),
            source,
        })?;
        return check_machine(&zip_path, &head, wanted);
    }
    let mut head = [0u8; 64];
    let n = std::fs::File::open(&binary)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|source| BuildError::Read {
            path: binary.clone(),
            source,
        })?;
    check_machine(&binary, &head[..n], wanted)?;
    // Only a binary over the limit can make a zip over it: zip that one now to know.
    let size = std::fs::metadata(&binary).map_or(0, |m| m.len() as usize);
    if size > UNZIPPED_LIMIT_BYTES || (size > DIRECT_UPLOAD_SWITCH_BYTES && !via_s3) {
        let bytes = read(&binary)?;
        check_size(
            package,
            &lambda_zip::zip_bootstrap(&bytes),
            Some(bytes.len()),
            via_s3,
        )?;
    }
    Ok(())
}

impl Artifact {
    fn new(zip: Vec<u8>) -> Artifact {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &zip);
        Artifact {
            sha256_base64: base64::engine::general_purpose::STANDARD.encode(digest.as_ref()),
            zip,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Lambda's limits: the unzipped size (`unzipped`, or the zip's entries'), and, for code
/// that cannot go through S3, the direct upload's.
fn check_size(
    package: &str,
    zip: &[u8],
    unzipped: Option<usize>,
    via_s3: bool,
) -> Result<(), BuildError> {
    let unzipped = unzipped.unwrap_or_else(|| lambda_zip::unzipped_size(zip));
    if unzipped > UNZIPPED_LIMIT_BYTES {
        return Err(BuildError::TooLargeUnzipped {
            package: package.to_owned(),
            size: unzipped,
        });
    }
    if zip.len() > DIRECT_UPLOAD_SWITCH_BYTES && !via_s3 {
        return Err(BuildError::TooLarge {
            package: package.to_owned(),
            size: zip.len(),
        });
    }
    Ok(())
}

fn check_machine(path: &Path, head: &[u8], wanted: Machine) -> Result<(), BuildError> {
    let found = Machine::of(head);
    if found == wanted {
        return Ok(());
    }
    Err(BuildError::Architecture {
        path: path.to_owned(),
        found,
        wanted: if wanted == Machine::Aarch64 {
            "arm64"
        } else {
            "x86_64"
        },
    })
}

/// Runs cargo-lambda at the root of the workspace that holds infra.toml (it reads
/// Cargo.toml from its working folder only); the path of the built `bootstrap`.
fn cargo_lambda_build(
    project_dir: &Path,
    package: &str,
    arm64: bool,
) -> Result<PathBuf, BuildError> {
    let meta = metadata(project_dir)?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&meta.workspace_root).args([
        "lambda",
        "build",
        "--release",
        "--output-format",
        "binary",
        "--package",
        package,
        "--bin",
        package,
        if arm64 { "--arm64" } else { "--x86-64" },
    ]);
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
    Ok(meta
        .target_directory
        .join("lambda")
        .join(package)
        .join("bootstrap"))
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
