//! The fixture files under `tests/fixtures/`, read one way, and changed only by [`Text::with`],
//! which fails when the text to replace is not there (a test whose edit silently did
//! nothing would assert on the unedited file).

use std::path::Path;

use crate::paths::fixture;

/// The guide's first example: a project, its link and the api as a function URL.
pub const GUIDE_HONO: &str = "infra/guide-aws-hono.toml";
/// The guide's second example: the full Neon stack (branch, endpoint, role, database).
pub const GUIDE_FULL: &str = "infra/guide-full-stack.toml";

/// A fixture's text, as read or edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

/// `tests/fixtures/<relative>`.
pub fn read(relative: &str) -> Text {
    let path = fixture(relative);
    Text(
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display())),
    )
}

/// A recorded function-URL event, `tests/fixtures/events/<name>`, as JSON.
pub fn event(name: &str) -> serde_json::Value {
    let text = read(&format!("events/{name}"));
    serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("event {name}: {e}"))
}

/// Any file's text, for edits of what a run wrote (a state file).
pub fn read_file(path: &Path) -> Text {
    Text(std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

impl Text {
    /// Every `from` replaced by `to`; panics when `from` does not occur.
    pub fn with(self, from: &str, to: &str) -> Text {
        assert!(
            self.0.contains(from),
            "the fixture has no {from:?} to replace; has it changed?\n{}",
            self.0
        );
        Text(self.0.replace(from, to))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// No `Deref` to `str`: `str::replace` on a fixture would compile and could silently do
/// nothing; edits go through [`Text::with`].
impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

/// The guide's app ([`GUIDE_HONO`]) with more lines in its `[function.MyApi]` table.
pub fn guide_with_function_lines(lines: &str) -> Text {
    read(GUIDE_HONO).with("url = true\n", &format!("url = true\n{lines}\n"))
}

/// A folder holding `fixture` (an infra.toml fixture, `infra/...`) with `extra` lines before
/// its project's table and `migrations = "migrations"` in it, and `migrations/` holding the
/// fixture migrations `migrations/notes/` (a first deploy's two). Kept while the dir lives.
pub fn with_migrations(fixture: &str, extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let text = read(fixture).with(
        "[neon.project.MyAppProject]\n",
        &format!("{extra}\n[neon.project.MyAppProject]\nmigrations = \"migrations\"\n"),
    );
    let (dir, config) = crate::deploy::temp_config(text);
    let to = dir.path().join("migrations");
    std::fs::create_dir(&to).expect("mkdir migrations");
    let from = crate::paths::fixture("migrations/notes");
    for entry in std::fs::read_dir(&from).expect("fixture migrations") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("a file"))).expect("copy");
    }
    (dir, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "has no \"no such line\" to replace")]
    fn an_edit_of_text_that_is_not_there_fails() {
        let _ = read(GUIDE_HONO).with("no such line", "x");
    }

    #[test]
    fn an_edit_replaces_what_is_there() {
        let edited = read(GUIDE_HONO).with("url = true", "url = true\nmemory = 256");
        assert!(edited.as_str().contains("url = true\nmemory = 256"));
    }
}
