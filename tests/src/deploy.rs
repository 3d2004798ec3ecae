//! Everything a deployer run talks to, started for one test: the Neon emulator over its
//! own PostgreSQL, moto behind a recording proxy, and a state folder; plus running the
//! deployer binary against them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use deployer::neon::models::{Project, ProjectsResponse};
use neon_emulator::EmulatorConfig;
use tempfile::TempDir;

use crate::aws::{AwsProxy, Moto};
use crate::neon::{API_KEY, NeonStack};
use crate::paths::{workspace_bin, workspace_root};

/// The default state bucket in moto's account and the fixtures' region.
pub const STATE_BUCKET: &str = "deployer-state-123456789012-us-east-1";

/// What a finished deployer run printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the run succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "deployer failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub struct DeployStack {
    pub neon: NeonStack,
    pub aws: AwsProxy,
    _moto: Moto,
    pub state: TempDir,
    pub lambda: aws_sdk_lambda::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Path-style, as moto serves buckets.
    pub s3: aws_sdk_s3::Client,
}

/// Builds the api for Lambda once per test run, as the deployer builds it
/// (`target/lambda/api/bootstrap`, x86_64), and returns the folder to pass as
/// `DEPLOYER_ARTIFACT_DIR` (the deployer zips it).
pub fn lambda_artifacts() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = std::process::Command::new("cargo")
                .current_dir(workspace_root())
                .args([
                    "lambda",
                    "build",
                    "--release",
                    "--output-format",
                    "binary",
                    "--package",
                    "api",
                    "--bin",
                    "api",
                    "--x86-64",
                ])
                .status()
                .expect("run cargo lambda build (pip install cargo-lambda ziglang)");
            assert!(status.success(), "cargo lambda build failed");
            let meta = std::process::Command::new("cargo")
                .current_dir(workspace_root())
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .output()
                .expect("cargo metadata");
            let meta: serde_json::Value =
                serde_json::from_slice(&meta.stdout).expect("metadata JSON");
            PathBuf::from(meta["target_directory"].as_str().expect("target dir")).join("lambda")
        })
        .clone()
}

impl DeployStack {
    pub async fn start(configure: impl FnOnce(&mut EmulatorConfig)) -> Self {
        let neon = NeonStack::start(configure).await;
        let moto = Moto::start();
        let aws = AwsProxy::start(&moto.endpoint).await;
        // Through the proxy: tests read AWS as the deployer does, with the model's answers.
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&aws.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        DeployStack {
            neon,
            aws,
            _moto: moto,
            state: tempfile::tempdir().expect("state dir"),
            lambda: aws_sdk_lambda::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    .force_path_style(true)
                    .build(),
            ),
        }
    }

    /// The environment a user would have: keys, endpoints, region.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("NEON_API_KEY", API_KEY.to_owned()),
            ("NEON_API_HOST", self.neon.emulator.base_url()),
            ("NEON_ORG_ID", "org-test-123".to_owned()),
            // The emulator's CA, trusted as a system root (`sslrootcert=system`) by the
            // api and the commands `deployer dev` runs.
            (
                "SSL_CERT_FILE",
                crate::neon::emulator_ca().file.display().to_string(),
            ),
            ("AWS_ENDPOINT_URL", self.aws.endpoint.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            (
                "DEPLOYER_STATE_DIR",
                self.state.path().display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The deployer command for `config` and `args`, with [`DeployStack::env`].
    pub fn command(&self, config: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(workspace_bin("deployer"));
        cmd.arg("--config").arg(config).args(args).env_clear();
        for keep in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "CARGO_TARGET_DIR",
        ] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.envs(self.env())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // Configs outside the workspace use the binary built by `lambda_artifacts`. Those in
        // it are built by the deployer (`cargo lambda build`), never while that build runs:
        // two at once race to move the same binary into target/lambda.
        let artifacts = lambda_artifacts();
        if !config.starts_with(workspace_root()) {
            cmd.env("DEPLOYER_ARTIFACT_DIR", artifacts);
        }
        cmd
    }

    /// Runs the deployer to completion.
    pub async fn run(&self, config: &Path, args: &[&str]) -> Run {
        let out = self
            .command(config, args)
            .output()
            .await
            .expect("run deployer");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The Lambda function `name` as Lambda describes it.
    pub async fn function_configuration(
        &self,
        name: &str,
    ) -> aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput {
        self.lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("function `{name}`: {e:?}"))
    }

    /// Deploys `stage` again and asserts it changed nothing ("No changes.").
    pub async fn assert_no_changes(&self, config: &Path, stage: &str) {
        let again = self.run(config, &["deploy", "--stage", stage]).await.ok();
        assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    }

    /// The stage's state file.
    pub fn state_file(&self, stage: &str) -> PathBuf {
        self.state.path().join(format!("{stage}.state.json"))
    }

    pub fn state_json(&self, stage: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.state_file(stage)).expect("state file"))
            .expect("state JSON")
    }

    /// The stage's state as the deployer reads it (typed, migrated from older formats).
    pub fn state(&self, stage: &str) -> deployer::state::StageState {
        let path = self.state_file(stage);
        let bytes = std::fs::read(&path).expect("state file");
        deployer::state::parse_state(&bytes, &path.display().to_string()).expect("state")
    }

    /// The typed IDs the stage recorded for `resource`.
    pub fn recorded_ids<T: serde::de::DeserializeOwned>(&self, stage: &str, resource: &str) -> T {
        let state = self.state(stage);
        let Some(rs) = state.resources.get(resource) else {
            panic!("stage `{stage}` recorded no `{resource}`: {state:#?}");
        };
        rs.ids_as(resource).expect("the IDs its kind records")
    }

    /// A stage's object (`state.json`, `lock.json`) in the default state bucket under the
    /// fixtures' prefix `team`, as JSON with its ETag; none if it is not there.
    pub async fn state_object(
        &self,
        stage: &str,
        object: &str,
    ) -> Option<(serde_json::Value, String)> {
        let out = self
            .s3
            .get_object()
            .bucket(STATE_BUCKET)
            .key(format!("team/aws-hono/{stage}/{object}"))
            .send()
            .await
            .ok()?;
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let bytes = out.body.collect().await.expect("object body").into_bytes();
        Some((serde_json::from_slice(&bytes).expect("JSON object"), etag))
    }

    /// The Neon projects named exactly `name` (Neon's search is by substring).
    pub async fn projects_named(&self, name: &str) -> Vec<Project> {
        let listed: ProjectsResponse = self
            .neon
            .client
            .call(
                "GET",
                "/projects",
                &[],
                &format!(
                    "search={}&limit=400",
                    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                ),
                None,
            )
            .await
            .typed();
        listed
            .projects
            .into_iter()
            .filter(|p| p.name == name)
            .collect()
    }
}

/// Writes `text` as an infra.toml in a new folder (kept while the returned dir lives).
pub fn temp_config(text: impl AsRef<str>) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("infra.toml");
    std::fs::write(&path, text.as_ref()).expect("write infra.toml");
    (dir, path)
}
