//! The project's binaries as child processes: a clean environment, output captured for
//! assertions, stopped (whole process group) when dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running child process whose stdout and stderr are collected.
pub struct Spawned {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Spawned {
    /// Starts `cmd` in its own process group, collecting its output.
    pub fn start(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        Spawned { child, output }
    }

    /// Everything the process printed so far (stdout and stderr, interleaved by line).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output matches `find`, returning what it found; panics with the
    /// output after `timeout` or when the process exits first.
    pub fn wait_for<T>(&mut self, timeout: Duration, find: impl Fn(&str) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(found) = find(&self.output()) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "process exited ({status}) before it was ready:\n{}",
                    self.output()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "process not ready after {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. "TERM") to the process group the child leads.
    pub fn signal(&self, signal: &str) {
        let pgid = self.child.id();
        assert!(pgid > 1, "refusing to signal process group {pgid}");
        let _ = Command::new("kill")
            .args(["-s", signal, "--"])
            .arg(format!("-{pgid}"))
            .status();
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("TERM");
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                self.signal("KILL");
                let _ = self.child.wait();
            }
        }
    }
}

/// A command with an environment of only `PATH`, `HOME` and `vars`, so nothing from the
/// developer's shell (a `DATABASE_URL`, say) leaks into a test.
pub fn clean_command(program: &Path, vars: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for keep in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.envs(vars);
    cmd
}

/// The api binary serving HTTP on a free loopback port.
pub struct ApiServer {
    pub process: Spawned,
    pub base_url: String,
}

impl ApiServer {
    /// Starts `target/<profile>/api` with `vars` (plus `PORT=0`) and waits until it listens.
    pub fn start(vars: &[(&str, &str)]) -> Self {
        Self::start_binary(&crate::paths::workspace_bin("api"), vars)
    }

    /// Starts another build of the api (a Lambda `bootstrap`, say) the same way.
    pub fn start_binary(binary: &std::path::Path, vars: &[(&str, &str)]) -> Self {
        let mut env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.entry("PORT".into()).or_insert_with(|| "0".into());
        env.entry("RUST_LOG".into())
            .or_insert_with(|| "info".into());
        let mut process = Spawned::start(clean_command(binary, &env));
        let base_url = process.wait_for(Duration::from_secs(20), |out| {
            let at = out.find("listening on http://")?;
            let rest = &out[at + "listening on ".len()..];
            Some(rest.split_whitespace().next()?.to_owned())
        });
        ApiServer { process, base_url }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// What the api logged so far.
    pub fn logs(&self) -> String {
        self.process.output()
    }
}
