//! Where `${env.VAR}` comes from: the process environment, then `.env.<stage>`, then `.env`
//! beside infra.toml (loaded automatically, as SST does; the process wins, as dotenv does).
//! Values are taken literally, as Node's dotenv (which SST uses) takes them: `dotenvy`
//! would expand `$VAR` inside unquoted and double-quoted values, silently changing a
//! password that holds a `$`.

use std::collections::BTreeMap;
use std::path::Path;

/// Environment variables visible to infra.toml and to the deployer's own settings.
#[derive(Debug, Clone, Default)]
pub struct EnvSource {
    process: BTreeMap<String, String>,
    files: BTreeMap<String, String>,
    /// Local runs: an unset variable reads as empty (with a warning) instead of an error,
    /// since what it fills (an org ID, say) only matters to Neon.
    pub lenient: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: expected KEY=VALUE")]
pub struct DotenvError {
    pub file: String,
    pub line: usize,
}

impl EnvSource {
    /// The process environment plus `.env` and `.env.<stage>` from `dir`, if present.
    pub fn load(dir: &Path, stage: Option<&str>) -> Result<Self, DotenvError> {
        let mut files = BTreeMap::new();
        let mut names = vec![".env".to_owned()];
        if let Some(stage) = stage {
            names.push(format!(".env.{stage}"));
        }
        for name in names {
            let path = dir.join(&name);
            if let Ok(text) = std::fs::read_to_string(&path) {
                files.extend(parse_dotenv(&text, &name)?);
            }
        }
        Ok(EnvSource {
            process: std::env::vars().collect(),
            files,
            lenient: false,
        })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.process
            .get(key)
            .or_else(|| self.files.get(key))
            .filter(|v| !v.is_empty())
            .cloned()
    }
}

/// `KEY=VALUE` lines; `#` comments, optional `export `, single or double quotes.
pub fn parse_dotenv(text: &str, file: &str) -> Result<BTreeMap<String, String>, DotenvError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=').ok_or(DotenvError {
            file: file.to_owned(),
            line: i + 1,
        })?;
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        out.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_wins_over_stage_file_which_wins_over_dotenv() {
        let dir = std::env::temp_dir().join(format!("dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(".env"),
            "# comment\nA=from-env\nexport B='from env'\nC=\"c\"\n",
        )
        .unwrap();
        std::fs::write(dir.join(".env.prod"), "B=from-stage\n").unwrap();
        let mut env = EnvSource::load(&dir, Some("prod")).unwrap();
        env.process.insert("C".into(), "from-process".into());
        assert_eq!(env.get("A").as_deref(), Some("from-env"));
        assert_eq!(env.get("B").as_deref(), Some("from-stage"));
        assert_eq!(env.get("C").as_deref(), Some("from-process"));
        let other = EnvSource::load(&dir, Some("dev")).unwrap();
        assert_eq!(other.get("B").as_deref(), Some("from env"));
        std::fs::write(dir.join(".env"), "NOT A PAIR\n").unwrap();
        let err = EnvSource::load(&dir, None).unwrap_err();
        assert_eq!(err.to_string(), ".env:1: expected KEY=VALUE");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
