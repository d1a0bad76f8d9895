//! Desired-state files: CREATE TABLE statements as people (or `SHOW CREATE TABLE`, `skeema
//! pull`, `mysqldump --no-data`) write them, split, checked and located for error messages.

use std::collections::BTreeMap;

use sqlparser::ast::Statement;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Whitespace, Word};

use super::sql::{self, keyword, significant, LineIndex};
use super::SchemaError;

/// One table of the desired state, as written in a schema file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTable {
    pub name: String,
    /// The statement exactly as written (executable comments kept for the server to judge).
    pub sql: String,
    pub file: String,
    pub line: u64,
    /// `(column, previous name)` from `-- schemagate:renamed-from old` hints.
    pub renames: Vec<(String, String)>,
}

const HINT_PREFIX: &str = "schemagate:";

/// Parses every schema file of one keyspace. All problems are collected, so a user fixes
/// them in one round; duplicate definitions across files are problems too.
pub fn parse_keyspace<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<DesiredTable>, Vec<SchemaError>> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut tables = Vec::new();
    for (path, text) in files {
        match parse_file(path, text) {
            Ok(found) => {
                for table in found {
                    if let Some((file, line)) = seen.get(&table.name) {
                        errors.push(SchemaError::at(
                            &table.file,
                            table.line,
                            1,
                            format!(
                                "table `{}` is already defined at {file}:{line}; keep one definition",
                                table.name
                            ),
                        ));
                        continue;
                    }
                    seen.insert(table.name.clone(), (table.file.clone(), table.line));
                    tables.push(table);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(tables)
    } else {
        Err(errors)
    }
}

/// Parses one file into its CREATE TABLE statements.
pub fn parse_file(path: &str, text: &str) -> Result<Vec<DesiredTable>, Vec<SchemaError>> {
    let unwrapped = sql::unwrap_executable_comments(text);
    let tokens = sql::tokenize(&unwrapped).map_err(|e| {
        vec![SchemaError::at(
            path,
            e.location.line,
            e.location.column,
            e.message.clone(),
        )]
    })?;
    let index = LineIndex::new(text);
    let mut tables = Vec::new();
    let mut errors = Vec::new();
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        let (statement, end) = match t.token {
            Token::SemiColon => (&tokens[start..i], index.offset(t.span.start)),
            _ if i + 1 == tokens.len() => (&tokens[start..], text.len()),
            _ => continue,
        };
        start = i + 1;
        match parse_statement(path, text, &index, statement, end) {
            Ok(Some(table)) => tables.push(table),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(tables)
    } else {
        Err(errors)
    }
}

fn parse_statement(
    path: &str,
    text: &str,
    index: &LineIndex,
    tokens: &[TokenWithSpan],
    end: usize,
) -> Result<Option<DesiredTable>, SchemaError> {
    let words: Vec<(usize, &TokenWithSpan)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| significant(&t.token))
        .collect();
    let Some(&(_, first)) = words.first() else {
        return Ok(None);
    };
    let start = first.span.start;
    let head: Vec<String> = words
        .iter()
        .take(4)
        .map(|(_, t)| keyword(&t.token).unwrap_or_default())
        .collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    match head.as_slice() {
        ["CREATE", "TABLE", ..] | ["CREATE", "OR", "REPLACE", "TABLE"] => {}
        // mysqldump boilerplate around each table: session settings and the DROP before CREATE.
        ["SET", ..] | ["DROP", "TABLE", "IF", "EXISTS"] => return Ok(None),
        ["CREATE", "TEMPORARY", ..] => {
            return Err(SchemaError::at(
                path,
                start.line,
                start.column,
                "temporary tables cannot be part of a schema; remove this statement",
            ))
        }
        _ => {
            let found: Vec<String> = words
                .iter()
                .take(3)
                .map(|(_, t)| t.token.to_string())
                .collect();
            return Err(SchemaError::at(
                path,
                start.line,
                start.column,
                format!(
                    "only CREATE TABLE statements belong in schema files, found `{}`; move it out of schemas/",
                    found.join(" ")
                ),
            ));
        }
    }
    // Up to the `;`, not the last token: a closing `*/` of an executable comment belongs to it.
    let statement_text = text[index.offset(start)..end].trim_end();

    let parse_tokens = parser_tokens(tokens);
    let parsed = Parser::new(&MySqlDialect {})
        .with_tokens_with_locations(parse_tokens)
        .parse_statement()
        .map_err(|e| located_parser_error(path, start, &e.to_string()))?;
    let Statement::CreateTable(create) = parsed else {
        return Err(SchemaError::at(
            path,
            start.line,
            start.column,
            "expected a CREATE TABLE statement",
        ));
    };
    if create.query.is_some() || create.like.is_some() || create.clone.is_some() {
        return Err(SchemaError::at(
            path,
            start.line,
            start.column,
            "CREATE TABLE … LIKE / AS SELECT cannot describe a desired schema; write the columns out",
        ));
    }
    let name = match create.name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(|i| i.value.clone())
            .unwrap_or_else(|| part.to_string()),
        _ => {
            return Err(SchemaError::at(
                path,
                start.line,
                start.column,
                format!(
                    "table name `{}` names a database; the keyspace's `database` decides where tables live, so write the bare table name",
                    create.name
                ),
            ))
        }
    };
    if crate::naming::is_artifact_table(&name) {
        return Err(SchemaError::at(
            path,
            start.line,
            start.column,
            format!("table name `{name}` is reserved for schemagate's own shadow and retention tables; rename it"),
        ));
    }
    let columns: Vec<(String, Location)> = create
        .columns
        .iter()
        .map(|c| (c.name.value.clone(), c.name.span.start))
        .collect();
    let renames = rename_hints(path, tokens, &columns)?;
    Ok(Some(DesiredTable {
        name,
        sql: statement_text.to_string(),
        file: path.to_string(),
        line: start.line,
        renames,
    }))
}

/// Tokens prepared for sqlparser: the partition clause (which sqlparser cannot parse for
/// MySQL) is cut off — the server, not sqlparser, judges it — MariaDB's `PERSISTENT`
/// becomes its synonym `STORED`, and the charset shorthands after a column type are left out
/// (see [`is_charset_shorthand`]).
fn parser_tokens(tokens: &[TokenWithSpan]) -> Vec<TokenWithSpan> {
    let mut depth = 0i32;
    let mut body_seen = false;
    // Significant tokens of the current table element (column, key, …) at its top level.
    let mut element: Vec<&Token> = Vec::new();
    let mut out = Vec::with_capacity(tokens.len());
    let mut iter = tokens.iter().peekable();
    while let Some(t) = iter.next() {
        if depth == 1 && significant(&t.token) {
            if t.token == Token::Comma {
                element.clear();
            } else if is_charset_shorthand(&t.token, &element) {
                continue;
            } else {
                element.push(&t.token);
            }
        }
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    body_seen = true;
                }
            }
            Token::Word(_) if depth == 0 && body_seen => {
                // `PARTITION BY …` ends the part sqlparser reads; MariaDB's `WITH SYSTEM
                // VERSIONING` is left out (the server judges both in the workspace).
                let next = iter
                    .clone()
                    .find(|n| significant(&n.token))
                    .and_then(|n| keyword(&n.token));
                match (keyword(&t.token).as_deref(), next.as_deref()) {
                    (Some("PARTITION"), Some("BY")) => break,
                    (Some("WITH"), Some("SYSTEM")) => {
                        let mut skipped = 0;
                        while skipped < 2 {
                            match iter.next() {
                                Some(n) if significant(&n.token) => skipped += 1,
                                Some(_) => {}
                                None => break,
                            }
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            Token::Word(w)
                if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("PERSISTENT") =>
            {
                out.push(TokenWithSpan::new(
                    Token::Word(Word {
                        value: "STORED".into(),
                        quote_style: None,
                        keyword: sqlparser::keywords::Keyword::STORED,
                    }),
                    t.span,
                ));
                continue;
            }
            _ => {}
        }
        out.push(t.clone());
    }
    out
}

/// Element keywords that start something other than a column definition.
const NOT_A_COLUMN: [&str; 10] = [
    "CONSTRAINT",
    "PRIMARY",
    "UNIQUE",
    "KEY",
    "INDEX",
    "FULLTEXT",
    "SPATIAL",
    "FOREIGN",
    "CHECK",
    "PERIOD",
];

/// MariaDB's charset shorthands after a column's type, which sqlparser's grammar lacks:
/// `varchar(10) BINARY` (the charset's `_bin` collation), `ASCII` and `UNICODE`. Only after
/// the type (`element` holds the name and the type at least), never as a charset or
/// collation name (`CHARACTER SET binary`) or a default.
fn is_charset_shorthand(token: &Token, element: &[&Token]) -> bool {
    let is_shorthand =
        keyword(token).is_some_and(|k| matches!(k.as_str(), "BINARY" | "ASCII" | "UNICODE"));
    let (Some(first), Some(previous)) = (element.first(), element.last()) else {
        return false;
    };
    let column = keyword(first).is_none_or(|k| !NOT_A_COLUMN.contains(&k.as_str()));
    let after_value_keyword = matches!(*previous, Token::Eq)
        || keyword(previous)
            .is_some_and(|k| matches!(k.as_str(), "SET" | "CHARSET" | "COLLATE" | "DEFAULT"));
    is_shorthand && column && element.len() >= 2 && !after_value_keyword
}

/// sqlparser reports `… at Line: L, Column: C`; turn that into `file:L:C: …`.
fn located_parser_error(path: &str, start: Location, message: &str) -> SchemaError {
    let message = message.trim_start_matches("sql parser error: ");
    if let Some((text, at)) = message.rsplit_once(" at Line: ") {
        if let Some((line, column)) = at.split_once(", Column: ") {
            if let (Ok(line), Ok(column)) = (line.trim().parse(), column.trim().parse()) {
                return SchemaError::at(path, line, column, text.to_string());
            }
        }
    }
    SchemaError::at(path, start.line, start.column, message.to_string())
}

fn rename_hints(
    path: &str,
    tokens: &[TokenWithSpan],
    columns: &[(String, Location)],
) -> Result<Vec<(String, String)>, SchemaError> {
    let mut renames = Vec::new();
    for t in tokens {
        let comment = match &t.token {
            Token::Whitespace(Whitespace::SingleLineComment { comment, .. }) => comment,
            Token::Whitespace(Whitespace::MultiLineComment(comment)) => comment,
            _ => continue,
        };
        let Some(hint) = comment.trim().strip_prefix(HINT_PREFIX) else {
            continue;
        };
        let at = t.span.start;
        let mut parts = hint.split_whitespace();
        let (Some("renamed-from"), Some(old), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SchemaError::at(
                path,
                at.line,
                at.column,
                format!("unknown hint `{HINT_PREFIX}{}`; the supported hint is `-- {HINT_PREFIX}renamed-from <old column name>`", hint.trim()),
            ));
        };
        // A hint belongs to the column defined on its line, else to the next column.
        let column = columns
            .iter()
            .find(|(_, loc)| loc.line == at.line)
            .or_else(|| columns.iter().find(|(_, loc)| *loc > at));
        let Some((column, _)) = column else {
            return Err(SchemaError::at(
                path,
                at.line,
                at.column,
                "this renamed-from hint is not next to a column definition; put it on the line of the renamed column",
            ));
        };
        let old = old.trim_matches('`').to_string();
        renames.push((column.clone(), old));
    }
    Ok(renames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_written_tables_parse() {
        let text = "-- users\ncreate table users (\n  id integer primary key auto_increment,\n  full_name varchar(100) not null, -- schemagate:renamed-from name\n  active bool default true,\n  index (full_name)\n) engine=innodb;\n\nCREATE TABLE `orders` (`id` bigint NOT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n";
        let tables = parse_file("schemas/app/users.sql", text).unwrap();
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].name, "users");
        assert_eq!(tables[0].line, 2);
        assert!(tables[0].sql.starts_with("create table users ("));
        assert!(tables[0].sql.ends_with(") engine=innodb"));
        assert_eq!(
            tables[0].renames,
            vec![("full_name".to_string(), "name".to_string())]
        );
        assert_eq!(tables[1].name, "orders");
        assert_eq!(tables[1].line, 9);
    }

    #[test]
    fn hint_on_the_line_before_applies_to_the_next_column() {
        let text =
            "create table t (\n  id int,\n  -- schemagate:renamed-from `old`\n  new_name int\n)";
        let tables = parse_file("t.sql", text).unwrap();
        assert_eq!(tables[0].renames, vec![("new_name".into(), "old".into())]);
    }

    #[test]
    fn mysqldump_output_parses() {
        let text = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\nDROP TABLE IF EXISTS `t`;\n/*!40101 SET @saved_cs_client     = @@character_set_client */;\n/*!40101 SET character_set_client = utf8mb4 */;\nCREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `c` int(11) GENERATED ALWAYS AS (`id` * 2) PERSISTENT,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci\n/*!50100 PARTITION BY HASH (`id`)\nPARTITIONS 4 */;\n/*!40101 SET character_set_client = @saved_cs_client */;\n";
        let tables = parse_file("dump.sql", text).unwrap();
        assert_eq!(tables.len(), 1);
        assert!(
            tables[0].sql.ends_with("PARTITIONS 4 */"),
            "{}",
            tables[0].sql
        );
    }

    #[test]
    fn charset_shorthands_after_the_type_are_accepted() {
        let text = "create table t (\n  a varchar(10) BINARY NOT NULL,\n  b char(3) ascii,\n  c text unicode,\n  d varchar(5) character set binary,\n  e binary(16),\n  f varchar(5) default 'x' binary\n)";
        let tables = parse_file("t.sql", text).unwrap();
        // The server gets the text as written.
        assert!(tables[0].sql.contains("varchar(10) BINARY NOT NULL"));
        // Elsewhere BINARY is still judged by the grammar.
        assert!(parse_file("u.sql", "create table u (a int, key k (a) binary)").is_err());
    }

    #[test]
    fn system_versioning_is_left_to_the_server() {
        let text = "CREATE TABLE t (id int) WITH SYSTEM VERSIONING PARTITION BY SYSTEM_TIME";
        let tables = parse_file("v.sql", text).unwrap();
        assert_eq!(tables[0].sql, text);
    }

    #[test]
    fn errors_are_located() {
        let err = parse_file(
            "a.sql",
            "create table t (\n  id int,\n  name varchar(10) nonsense\n);",
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        let message = err[0].to_string();
        assert!(message.starts_with("a.sql:3:"), "{message}");

        let err = parse_file(
            "b.sql",
            "create table t (id int);\ninsert into t values (1);",
        )
        .unwrap_err();
        assert!(
            err[0]
                .to_string()
                .starts_with("b.sql:2:1: only CREATE TABLE"),
            "{}",
            err[0]
        );

        let err = parse_file("c.sql", "create table app.t (id int);").unwrap_err();
        assert!(
            err[0].to_string().contains("names a database"),
            "{}",
            err[0]
        );

        let err = parse_file(
            "d.sql",
            "create table t (id int -- schemagate:renamed-frm x\n);",
        )
        .unwrap_err();
        assert!(err[0].to_string().contains("unknown hint"), "{}", err[0]);

        let err = parse_file(
            "e.sql",
            "create table t (id int, name varchar(10) default 'x);",
        )
        .unwrap_err();
        assert!(err[0].to_string().starts_with("e.sql:1:"), "{}", err[0]);
    }

    #[test]
    fn duplicates_across_files_are_reported_with_both_places() {
        let err = parse_keyspace([
            ("a.sql", "create table t (id int);"),
            ("b.sql", "\ncreate table t (id int);"),
        ])
        .unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "b.sql:2:1: table `t` is already defined at a.sql:1; keep one definition"
        );
    }
}
