//! Where the workspace, its fixtures and its built binaries are.

use std::path::{Path, PathBuf};

/// The workspace root (the folder holding `infra.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// A file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}

/// The `target/<profile>` folder this test binary was built into.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let mut dir = exe.parent().expect("test binary has a folder").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A workspace binary built next to this test binary; panics with the command that builds
/// it when it is missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = target_profile_dir().join(name);
    assert!(
        path.is_file(),
        "binary `{name}` not found at {}; build it first with `cargo build --workspace --bins` \
         (scripts/test does this before running the tests)",
        path.display()
    );
    path
}
