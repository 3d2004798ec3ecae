//! A migration file's statements: split as PostgreSQL's lexer reads them (quotes, `E''`
//! escapes, quoted identifiers, dollar quotes, nested comments, `BEGIN ATOMIC` bodies), each
//! with the line it starts on, so a failure names its line in the file; and the ones that
//! drop or rewrite data, found by a real SQL parser (`sqlparser`), for protected stages.

use sqlparser::ast::{AlterColumnOperation, AlterTableOperation, ObjectType, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// One statement of a file: its text (with its `;`, if it had one) and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql<'a> {
    pub text: &'a str,
    /// The 1-based line of its first character that is not space or comment.
    pub line: usize,
    /// The line its text starts on (after the previous statement's `;`).
    start_line: usize,
}

impl Sql<'_> {
    /// The line in the file of the 1-based character `position` of this statement, as
    /// PostgreSQL's error `position` counts.
    pub fn line_of(&self, position: usize) -> usize {
        let before: String = self.text.chars().take(position.saturating_sub(1)).collect();
        self.start_line + before.matches('\n').count()
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// Splits `sql` into statements at the `;`s that end them. Text after the last `;` is a
/// statement too, unless it is only space and comments.
pub fn split<'a>(sql: &'a str) -> Vec<Sql<'a>> {
    let b: Vec<(usize, char)> = sql.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0; // byte offset where the current statement starts
    let mut first_token: Option<usize> = None; // byte offset of its first token
    let mut words: Vec<String> = Vec::new(); // the last two words, upper-cased
    let mut atomic_depth = 0usize;
    let mut i = 0;
    let at = |i: usize| b.get(i).map(|&(_, c)| c);
    let push = |from: usize, to: usize, token: Option<usize>, out: &mut Vec<Sql<'a>>| {
        if let Some(t) = token {
            out.push(Sql {
                text: &sql[from..to],
                line: sql[..t].matches('\n').count() + 1,
                start_line: sql[..from].matches('\n').count() + 1,
            });
        }
    };
    while i < b.len() {
        let (off, c) = b[i];
        let next = at(i + 1);
        // Comments: skipped, never a statement's first token.
        if c == '-' && next == Some('-') {
            while i < b.len() && b[i].1 != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                match (b[i].1, at(i + 1)) {
                    ('/', Some('*')) => {
                        depth += 1;
                        i += 2;
                    }
                    ('*', Some('/')) => {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => i += 1,
                }
            }
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        first_token.get_or_insert(off);
        match c {
            ';' if atomic_depth == 0 => {
                let end = off + 1;
                push(start, end, first_token.take(), &mut out);
                start = end;
                words.clear();
                i += 1;
            }
            '\'' => {
                // `E'...'` takes backslash escapes; other strings only `''`.
                let escapes =
                    i > 0 && matches!(b[i - 1].1, 'e' | 'E') && !(i > 1 && is_ident(b[i - 2].1));
                i += 1;
                while i < b.len() {
                    match b[i].1 {
                        '\\' if escapes => i += 2,
                        '\'' if at(i + 1) == Some('\'') => i += 2,
                        '\'' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            '"' => {
                i += 1;
                while i < b.len() {
                    match b[i].1 {
                        '"' if at(i + 1) == Some('"') => i += 2,
                        '"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            '$' if !(i > 0 && is_ident(b[i - 1].1)) => {
                // `$tag$ ... $tag$` (the tag may be empty); `$1` is a parameter.
                let mut j = i + 1;
                while j < b.len() && is_ident(b[j].1) && b[j].1 != '$' {
                    j += 1;
                }
                let tag_ok = at(j) == Some('$') && at(i + 1).is_none_or(|c| !c.is_ascii_digit());
                if !tag_ok {
                    i += 1;
                    continue;
                }
                let tag: String = b[i..=j].iter().map(|&(_, c)| c).collect();
                let body_from = b.get(j + 1).map_or(sql.len(), |&(o, _)| o);
                match sql[body_from..].find(&tag) {
                    Some(k) => {
                        let end = body_from + k + tag.len();
                        while i < b.len() && b[i].0 < end {
                            i += 1;
                        }
                    }
                    None => i = b.len(),
                }
            }
            c if is_ident_start(c) => {
                let mut j = i;
                while j < b.len() && is_ident(b[j].1) {
                    j += 1;
                }
                let word: String = b[i..j]
                    .iter()
                    .map(|&(_, c)| c.to_ascii_uppercase())
                    .collect();
                // `BEGIN ATOMIC ... END` (a SQL-standard function body) holds `;`s, as
                // psql's lexer knows; `CASE ... END` nests inside it.
                match word.as_str() {
                    "ATOMIC" if words.last().is_some_and(|w| w == "BEGIN") => atomic_depth += 1,
                    "CASE" if atomic_depth > 0 => atomic_depth += 1,
                    "END" if atomic_depth > 0 => atomic_depth -= 1,
                    _ => {}
                }
                words.push(word);
                if words.len() > 2 {
                    words.remove(0);
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    push(start, sql.len(), first_token, &mut out);
    out
}

/// What a statement does to data a protected stage keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Risk {
    /// It drops or rewrites data: what, in words (`DROP TABLE users`).
    LosesData(String),
    /// The parser cannot read it, so it cannot be shown safe.
    Unreadable(String),
}

/// The data a statement would drop or rewrite, if any: `DROP TABLE`/`SCHEMA`/`DATABASE`/
/// `MATERIALIZED VIEW`, `TRUNCATE`, `ALTER TABLE ... DROP COLUMN`, `ALTER TABLE ... ALTER
/// COLUMN ... TYPE` (a rewrite that may also cast values away).
pub fn risk(statement: &str) -> Option<Risk> {
    let parsed = match Parser::parse_sql(&PostgreSqlDialect {}, statement) {
        Ok(p) => p,
        Err(e) => return Some(Risk::Unreadable(e.to_string())),
    };
    parsed.iter().find_map(|s| match s {
        Statement::Drop {
            object_type:
                t @ (ObjectType::Table
                | ObjectType::Schema
                | ObjectType::Database
                | ObjectType::MaterializedView),
            names,
            ..
        } => Some(Risk::LosesData(format!(
            "DROP {t} {}",
            names
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Statement::Truncate(t) => Some(Risk::LosesData(format!(
            "TRUNCATE {}",
            t.table_names
                .iter()
                .map(|n| n.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Statement::AlterTable(a) => a.operations.iter().find_map(|op| match op {
            AlterTableOperation::DropColumn { column_names, .. } => Some(Risk::LosesData(format!(
                "ALTER TABLE {} DROP COLUMN {}",
                a.name,
                column_names
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            AlterTableOperation::AlterColumn {
                column_name,
                op: AlterColumnOperation::SetDataType { .. },
            } => Some(Risk::LosesData(format!(
                "ALTER TABLE {} ALTER COLUMN {column_name} TYPE",
                a.name
            ))),
            _ => None,
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<(&str, usize)> {
        split(sql).iter().map(|s| (s.text.trim(), s.line)).collect()
    }

    #[test]
    fn splits_at_the_semicolons_that_end_statements() {
        let sql = "-- a comment; not a statement\nCREATE TABLE t (a text DEFAULT 'x;y');\n\n/* block; /* nested; */ */\nINSERT INTO \"we;ird\" VALUES (E'it\\'s;');\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\nSELECT $1, $$;$$\n";
        assert_eq!(
            texts(sql),
            vec![
                // Comments before a statement go with it (positions count from them).
                (
                    "-- a comment; not a statement\nCREATE TABLE t (a text DEFAULT 'x;y');",
                    2
                ),
                (
                    "/* block; /* nested; */ */\nINSERT INTO \"we;ird\" VALUES (E'it\\'s;');",
                    5
                ),
                (
                    "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;",
                    6
                ),
                ("SELECT $1, $$;$$", 7),
            ]
        );
    }

    #[test]
    fn a_begin_atomic_body_is_one_statement() {
        let sql = "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT 3;";
        let got = texts(sql);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1], ("SELECT 3;", 6));
    }

    #[test]
    fn only_comments_and_space_are_no_statement() {
        assert!(split("-- no-transaction\n  /* x */ \n").is_empty());
    }

    #[test]
    fn an_error_position_maps_to_its_line_in_the_file() {
        let sql = "SELECT 1;\n\nINSERT INTO t\nVALUES (nope);\n";
        let s = &split(sql)[1];
        assert_eq!(s.line, 3);
        // PostgreSQL counts from the statement's first character (its leading newlines).
        let position = s.text.find("nope").unwrap() + 1;
        assert_eq!(s.line_of(position), 4);
    }

    #[test]
    fn statements_that_lose_data_are_found_by_parsing_not_by_words() {
        for (sql, found) in [
            ("DROP TABLE users", true),
            ("drop table if exists a, b cascade", true),
            ("TRUNCATE audit", true),
            ("ALTER TABLE users DROP COLUMN email", true),
            ("ALTER TABLE users ALTER COLUMN id TYPE bigint", true),
            ("DROP SCHEMA old CASCADE", true),
            (
                "CREATE TABLE drop_table_log (note text DEFAULT 'DROP TABLE users')",
                false,
            ),
            ("ALTER TABLE users ADD COLUMN dropped boolean", false),
            (
                "CREATE INDEX CONCURRENTLY users_email ON users (email)",
                false,
            ),
            ("DROP INDEX users_email", false),
        ] {
            let risk = risk(sql);
            assert_eq!(
                matches!(risk, Some(Risk::LosesData(_))),
                found,
                "{sql}: {risk:?}"
            );
        }
    }
}
