//! The schema model. Desired files are parsed with sqlparser's grammar ([`desired`]); canonical
//! tables — `SHOW CREATE TABLE` output, from a shard or from a workspace database — are parsed
//! into [`Table`] with sqlparser's tokenizer, element by element. `SHOW CREATE TABLE` prints one
//! column, index or constraint per line in a fixed format, so each element keeps its exact
//! canonical text, and server types the grammar lacks (INET6, UUID, VECTOR) never block a plan.

pub mod desired;
pub mod sql;

pub use desired::{parse_file, parse_keyspace, DesiredTable};

use serde::Serialize;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use sql::{keyword, significant, LineIndex};

/// A problem in a schema file, located for the person who has to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SchemaError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl SchemaError {
    pub fn at(file: &str, line: u64, column: u64, message: impl Into<String>) -> Self {
        SchemaError {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// `SHOW CREATE TABLE` text that does not have the shape the server prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the definition of table `{table}`: {message}")]
pub struct CanonicalError {
    pub table: String,
    pub message: String,
}

/// A table in canonical form: what the server itself shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
    pub checks: Vec<Check>,
    /// Elements the model does not know (e.g. `PERIOD FOR`), compared as text.
    pub other: Vec<String>,
    /// Table options in the order shown, keys upper-case, `AUTO_INCREMENT` left out.
    pub options: Vec<(String, String)>,
    pub partitioning: Option<String>,
    /// The full canonical statement, `AUTO_INCREMENT=N` removed.
    pub create_sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    /// Everything after the name, as the server prints it.
    pub definition: String,
    pub data_type: ColumnType,
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub nullable: bool,
    pub generated: Option<Generated>,
    /// From a `schemagate:renamed-from` hint in the desired file.
    pub renamed_from: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Generated {
    Virtual,
    Stored,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnType {
    /// Lower-case type name: `int`, `varchar`, `enum`, …
    pub base: String,
    /// Arguments: lengths and precision as written, enum/set values unquoted.
    pub args: Vec<String>,
    pub unsigned: bool,
    pub zerofill: bool,
    /// Byte range of the type (with UNSIGNED/ZEROFILL) inside `Column::definition`.
    #[serde(skip)]
    pub span: (usize, usize),
    /// Byte range of the `CHARACTER SET … COLLATE …` clause inside the definition, if shown.
    #[serde(skip)]
    pub charset_span: Option<(usize, usize)>,
}

impl ColumnType {
    pub fn is_textual(&self) -> bool {
        matches!(
            self.base.as_str(),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IndexKind {
    Primary,
    Unique,
    Plain,
    Fulltext,
    Spatial,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Index {
    /// `PRIMARY` for the primary key.
    pub name: String,
    pub kind: IndexKind,
    pub columns: Vec<String>,
    /// The whole line, e.g. ``UNIQUE KEY `email` (`email`) COMMENT 'x'``.
    pub definition: String,
}

impl Index {
    /// The definition without its name, to recognise a renamed index.
    pub fn shape(&self) -> String {
        let quoted = sql::quote_ident(&self.name);
        self.definition.replacen(&format!("{quoted} "), "", 1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub referenced_table: String,
    /// Set only when the reference crosses into another database.
    pub referenced_database: Option<String>,
    pub referenced_columns: Vec<String>,
    /// The whole line, ``CONSTRAINT `fk` FOREIGN KEY (…) REFERENCES …``.
    pub definition: String,
}

impl ForeignKey {
    /// Parses one ``CONSTRAINT `name` FOREIGN KEY …`` line as `SHOW CREATE TABLE` prints it.
    pub fn parse(definition: &str) -> Option<ForeignKey> {
        let mut table = Table::parse_canonical("CREATE TABLE `_` (\n) ENGINE=InnoDB").ok()?;
        table.add_element(definition.trim()).ok()?;
        table.foreign_keys.pop()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    /// The whole line, ``CONSTRAINT `name` CHECK (…)``.
    pub definition: String,
}

impl Table {
    /// Parses `SHOW CREATE TABLE` output.
    pub fn parse_canonical(text: &str) -> Result<Table, CanonicalError> {
        let fail = |table: &str, message: String| CanonicalError {
            table: table.to_string(),
            message,
        };
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let name = header
            .strip_prefix("CREATE TABLE ")
            .and_then(|rest| rest.strip_suffix(" ("))
            .and_then(|quoted| unquote_ident(quoted.trim()))
            .ok_or_else(|| fail("?", format!("unexpected first line `{header}`")))?;
        let mut table = Table {
            name: name.clone(),
            columns: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            checks: Vec::new(),
            other: Vec::new(),
            options: Vec::new(),
            partitioning: None,
            create_sql: String::new(),
        };
        let mut options_line = None;
        for line in lines.by_ref() {
            if let Some(rest) = line.strip_prefix(')') {
                options_line = Some(rest.trim().to_string());
                break;
            }
            let element = line.trim().trim_end_matches(',');
            table
                .add_element(element)
                .map_err(|message| fail(&name, format!("{message} in `{element}`")))?;
        }
        let options_line =
            options_line.ok_or_else(|| fail(&name, "the closing `)` is missing".into()))?;
        table.options = parse_options(&options_line).map_err(|m| fail(&name, m))?;
        let rest: Vec<&str> = lines.collect();
        let partitioning = sql::unwrap_executable_comments(&rest.join("\n"));
        let partitioning = partitioning.trim();
        if !partitioning.is_empty() {
            table.partitioning = Some(partitioning.to_string());
        }
        table.create_sql = strip_auto_increment(text);
        Ok(table)
    }

    /// The canonical statement without some of its element lines (given by definition).
    pub fn create_sql_without(&self, definitions: &[&str]) -> String {
        if definitions.is_empty() {
            return self.create_sql.clone();
        }
        let mut lines = self.create_sql.lines();
        let header = lines.next().unwrap_or_default();
        let mut elements = Vec::new();
        let mut rest = Vec::new();
        for line in lines {
            if !rest.is_empty() || line.starts_with(')') {
                rest.push(line);
                continue;
            }
            let element = line.trim_end_matches(',');
            if !definitions.contains(&element.trim()) {
                elements.push(element);
            }
        }
        format!("{header}\n{}\n{}", elements.join(",\n"), rest.join("\n"))
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The table's default collation (what unlabelled text columns use).
    pub fn collation(&self) -> Option<&str> {
        self.option("COLLATE")
            .or_else(|| self.option("DEFAULT COLLATE"))
    }

    pub fn charset(&self) -> Option<&str> {
        self.option("DEFAULT CHARSET")
            .or_else(|| self.option("CHARSET"))
    }

    fn add_element(&mut self, element: &str) -> Result<(), String> {
        let tokens = sql::tokenize(element).map_err(|e| e.message)?;
        let index = LineIndex::new(element);
        let sig: Vec<&TokenWithSpan> = tokens.iter().filter(|t| significant(&t.token)).collect();
        let Some(first) = sig.first() else {
            return Err("empty element".into());
        };
        if let Token::Word(w) = &first.token {
            if w.quote_style == Some('`') {
                let rest_at = index.offset(first.span.end);
                let column = parse_column(&w.value, element[rest_at..].trim_start())?;
                self.columns.push(column);
                return Ok(());
            }
        }
        let words: Vec<String> = sig
            .iter()
            .take(3)
            .map(|t| keyword(&t.token).unwrap_or_default())
            .collect();
        let kind = match words.first().map(String::as_str) {
            Some("PRIMARY") => Some(IndexKind::Primary),
            Some("UNIQUE") => Some(IndexKind::Unique),
            Some("KEY") | Some("INDEX") => Some(IndexKind::Plain),
            Some("FULLTEXT") => Some(IndexKind::Fulltext),
            Some("SPATIAL") => Some(IndexKind::Spatial),
            _ => None,
        };
        if let Some(kind) = kind {
            let name = if kind == IndexKind::Primary {
                "PRIMARY".to_string()
            } else {
                sig.iter()
                    .find_map(|t| match &t.token {
                        Token::Word(w) if w.quote_style == Some('`') => Some(w.value.clone()),
                        _ => None,
                    })
                    .ok_or("index without a name")?
            };
            self.indexes.push(Index {
                name,
                kind,
                columns: first_group_names(&sig),
                definition: element.to_string(),
            });
            return Ok(());
        }
        if words.first().map(String::as_str) == Some("CONSTRAINT") {
            let name = match sig.get(1).map(|t| &t.token) {
                Some(Token::Word(w)) => w.value.clone(),
                _ => return Err("constraint without a name".into()),
            };
            match words.get(2).map(String::as_str) {
                Some("FOREIGN") => {
                    let references = sig
                        .iter()
                        .position(|t| keyword(&t.token).as_deref() == Some("REFERENCES"))
                        .ok_or("foreign key without REFERENCES")?;
                    let mut target = Vec::new();
                    for t in &sig[references + 1..] {
                        match &t.token {
                            Token::Word(w) => target.push(w.value.clone()),
                            Token::Period => {}
                            _ => break,
                        }
                    }
                    let referenced_table = target.pop().ok_or("foreign key without a table")?;
                    self.foreign_keys.push(ForeignKey {
                        name,
                        columns: first_group_names(&sig),
                        referenced_table,
                        referenced_database: target.pop(),
                        referenced_columns: first_group_names(&sig[references..]),
                        definition: element.to_string(),
                    });
                }
                Some("CHECK") => self.checks.push(Check {
                    name,
                    definition: element.to_string(),
                }),
                _ => self.other.push(element.to_string()),
            }
            return Ok(());
        }
        self.other.push(element.to_string());
        Ok(())
    }
}

/// Names inside the first parenthesised group: the key parts of an index or foreign key.
fn first_group_names(sig: &[&TokenWithSpan]) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut started = false;
    for t in sig {
        match &t.token {
            Token::LParen => {
                depth += 1;
                started = true;
            }
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Token::Word(w) if started && depth == 1 && w.quote_style == Some('`') => {
                names.push(w.value.clone())
            }
            _ => {}
        }
    }
    names
}

fn parse_column(name: &str, definition: &str) -> Result<Column, String> {
    let tokens = sql::tokenize(definition).map_err(|e| e.message)?;
    let index = LineIndex::new(definition);
    let sig: Vec<&TokenWithSpan> = tokens.iter().filter(|t| significant(&t.token)).collect();
    let Some(Token::Word(base)) = sig.first().map(|t| &t.token) else {
        return Err("column without a type".into());
    };
    let mut data_type = ColumnType {
        base: base.value.to_ascii_lowercase(),
        args: Vec::new(),
        unsigned: false,
        zerofill: false,
        span: (0, 0),
        charset_span: None,
    };
    let mut i = 1;
    if matches!(sig.get(1).map(|t| &t.token), Some(Token::LParen)) {
        i = 2;
        while let Some(t) = sig.get(i) {
            i += 1;
            match &t.token {
                Token::RParen => break,
                Token::Comma => {}
                Token::SingleQuotedString(s) => data_type.args.push(s.clone()),
                other => data_type.args.push(other.to_string()),
            }
        }
    }
    loop {
        match sig.get(i).and_then(|t| keyword(&t.token)).as_deref() {
            Some("UNSIGNED") => data_type.unsigned = true,
            Some("ZEROFILL") => data_type.zerofill = true,
            _ => break,
        }
        i += 1;
    }
    let type_end = sig
        .get(i - 1)
        .map(|t| index.offset(t.span.end))
        .unwrap_or(definition.len());
    data_type.span = (0, type_end);
    let mut column = Column {
        name: name.to_string(),
        definition: definition.to_string(),
        data_type,
        charset: None,
        collation: None,
        nullable: true,
        generated: None,
        renamed_from: None,
    };
    let mut charset_span: Option<(usize, usize)> = None;
    let mut extend = |start: &TokenWithSpan, end: &TokenWithSpan| {
        let (s, e) = (index.offset(start.span.start), index.offset(end.span.end));
        charset_span = Some(match charset_span {
            Some((a, b)) => (a.min(s), b.max(e)),
            None => (s, e),
        });
    };
    let mut depth = 0;
    while i < sig.len() {
        let t = sig[i];
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth > 0 => {}
            _ => match keyword(&t.token).as_deref() {
                Some("CHARACTER")
                    if keyword(&sig.get(i + 1).map_or(Token::EOF, |t| t.token.clone()))
                        .as_deref()
                        == Some("SET") =>
                {
                    if let Some(value) = sig.get(i + 2) {
                        column.charset = Some(word_value(&value.token));
                        extend(t, value);
                        i += 2;
                    }
                }
                Some("COLLATE") => {
                    if let Some(value) = sig.get(i + 1) {
                        column.collation = Some(word_value(&value.token));
                        extend(t, value);
                        i += 1;
                    }
                }
                Some("NOT")
                    if sig.get(i + 1).and_then(|t| keyword(&t.token)).as_deref()
                        == Some("NULL") =>
                {
                    column.nullable = false;
                    i += 1;
                }
                Some("DEFAULT") | Some("COMMENT") => {
                    // Skip the value so that e.g. DEFAULT 'STORED' is not read as a keyword.
                    i += 1;
                }
                Some("VIRTUAL") => column.generated = Some(Generated::Virtual),
                Some("STORED") | Some("PERSISTENT") => column.generated = Some(Generated::Stored),
                _ => {}
            },
        }
        i += 1;
    }
    column.data_type.charset_span = charset_span;
    Ok(column)
}

fn word_value(token: &Token) -> String {
    match token {
        Token::Word(w) => w.value.clone(),
        Token::SingleQuotedString(s) => s.clone(),
        other => other.to_string(),
    }
}

fn unquote_ident(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('`')?.strip_suffix('`')?;
    Some(inner.replace("``", "`"))
}

/// `ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='x'` as ordered key/value pairs, the value
/// kept as printed (quotes included).
fn parse_options(line: &str) -> Result<Vec<(String, String)>, String> {
    let tokens = sql::tokenize(line).map_err(|e| e.message)?;
    let index = LineIndex::new(line);
    let mut options = Vec::new();
    let mut key: Vec<String> = Vec::new();
    let mut sig = tokens.iter().filter(|t| significant(&t.token));
    while let Some(t) = sig.next() {
        match &t.token {
            Token::Eq => {
                let value = sig.next().ok_or("option without a value")?;
                let raw = &line[index.offset(value.span.start)..index.offset(value.span.end)];
                let name = key.join(" ");
                key.clear();
                if name != "AUTO_INCREMENT" {
                    options.push((name, raw.to_string()));
                }
            }
            Token::Word(w) => key.push(w.value.to_ascii_uppercase()),
            other => return Err(format!("unexpected `{other}` in table options")),
        }
    }
    if !key.is_empty() {
        // Flags without a value, e.g. `WITH SYSTEM VERSIONING`.
        options.push((key.join(" "), String::new()));
    }
    Ok(options)
}

/// Removes ` AUTO_INCREMENT=N` from the table options: counters are never a difference.
pub fn strip_auto_increment(create_sql: &str) -> String {
    create_sql
        .lines()
        .map(|line| {
            if !line.starts_with(')') {
                return line.to_string();
            }
            match line.find(" AUTO_INCREMENT=") {
                Some(at) => {
                    let rest = &line[at + " AUTO_INCREMENT=".len()..];
                    let digits = rest
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(rest.len());
                    format!("{}{}", &line[..at], &rest[digits..])
                }
                None => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "CREATE TABLE `a` (
  `id` int(11) unsigned NOT NULL AUTO_INCREMENT,
  `b` varchar(10) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL COMMENT 'x''y',
  `c` int(11) GENERATED ALWAYS AS (`id` * 2) STORED,
  `d` int(11) INVISIBLE DEFAULT NULL,
  `e` timestamp NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  `f` enum('a','b''c') NOT NULL DEFAULT 'a',
  `g` point NOT NULL,
  `h` text DEFAULT 'STORED',
  PRIMARY KEY (`id`),
  SPATIAL KEY `g` (`g`),
  KEY `k1` (`b`(5),`h`(10)) COMMENT 'ix',
  FULLTEXT KEY `h` (`h`),
  CONSTRAINT `fk` FOREIGN KEY (`d`) REFERENCES `other`.`t` (`x`) ON DELETE CASCADE,
  CONSTRAINT `CONSTRAINT_1` CHECK (`id` > 0)
) ENGINE=InnoDB AUTO_INCREMENT=10 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC COMMENT='tbl'
 PARTITION BY HASH (`id`)
PARTITIONS 4";

    #[test]
    fn canonical_tables_parse_into_the_model() {
        let t = Table::parse_canonical(SAMPLE).unwrap();
        assert_eq!(t.name, "a");
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "b", "c", "d", "e", "f", "g", "h"]);
        let id = &t.columns[0];
        assert_eq!(id.data_type.base, "int");
        assert!(id.data_type.unsigned && !id.nullable);
        assert_eq!(
            &id.definition[id.data_type.span.0..id.data_type.span.1],
            "int(11) unsigned"
        );
        let b = &t.columns[1];
        assert_eq!(b.charset.as_deref(), Some("latin1"));
        assert_eq!(b.collation.as_deref(), Some("latin1_swedish_ci"));
        let (s, e) = b.data_type.charset_span.unwrap();
        assert_eq!(
            &b.definition[s..e],
            "CHARACTER SET latin1 COLLATE latin1_swedish_ci"
        );
        assert_eq!(t.columns[2].generated, Some(Generated::Stored));
        assert_eq!(t.columns[5].data_type.args, ["a", "b'c"]);
        assert_eq!(t.columns[7].generated, None);
        assert_eq!(t.indexes.len(), 4);
        assert_eq!(t.indexes[2].columns, ["b", "h"]);
        assert_eq!(t.indexes[2].shape(), "KEY (`b`(5),`h`(10)) COMMENT 'ix'");
        assert_eq!(t.foreign_keys[0].referenced_table, "t");
        assert_eq!(t.foreign_keys[0].columns, ["d"]);
        assert_eq!(t.foreign_keys[0].referenced_columns, ["x"]);
        assert_eq!(
            t.foreign_keys[0].referenced_database.as_deref(),
            Some("other")
        );
        assert_eq!(t.checks[0].name, "CONSTRAINT_1");
        assert_eq!(t.option("ENGINE"), Some("InnoDB"));
        assert_eq!(t.option("AUTO_INCREMENT"), None);
        assert_eq!(t.collation(), Some("utf8mb4_general_ci"));
        assert_eq!(t.option("COMMENT"), Some("'tbl'"));
        assert_eq!(
            t.partitioning.as_deref(),
            Some("PARTITION BY HASH (`id`)\nPARTITIONS 4")
        );
        assert!(!t.create_sql.contains("AUTO_INCREMENT=10"));
        assert!(t.create_sql.contains("ENGINE=InnoDB DEFAULT CHARSET"));
    }

    #[test]
    fn elements_can_be_left_out_of_the_statement() {
        let t = Table::parse_canonical(SAMPLE).unwrap();
        let fk = t.foreign_keys[0].definition.as_str();
        let check = t.checks[0].definition.as_str();
        let without = t.create_sql_without(&[fk]);
        assert!(!without.contains("FOREIGN KEY"));
        assert!(without.contains("KEY `h` (`h`),\n  CONSTRAINT `CONSTRAINT_1`"));
        let without = Table::parse_canonical(&t.create_sql_without(&[fk, check])).unwrap();
        assert!(without.checks.is_empty() && without.foreign_keys.is_empty());
        assert_eq!(without.indexes, t.indexes);
        assert_eq!(without.partitioning, t.partitioning);
        assert_eq!(t.create_sql_without(&[]), t.create_sql);
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        assert!(Table::parse_canonical("").is_err());
        assert!(Table::parse_canonical("CREATE TABLE `t` (\n  `a` int(11)").is_err());
    }
}
