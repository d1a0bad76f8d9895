//! `schemagate.yaml`: keyspaces, their databases and their shards' DSNs.
//!
//! Names and structure are checked while deserializing (hand-written visitors), so those
//! errors carry the line and column yaml_serde attaches. DSNs are expanded and parsed
//! afterwards, because that needs the environment; their errors name keyspace and shard.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::dsn::{percent_encode, Dsn};
use super::error::SourceError;
use super::{Config, ForeignKeys, Keyspace, Shard};
use crate::naming::METADATA_DATABASE;

/// Longest database (and so keyspace) name MySQL and MariaDB accept.
const MAX_NAME_LEN: usize = 64;

/// Parses and validates `schemagate.yaml`, expanding `${VAR}` in DSNs through `env`.
/// `path_for_messages` is how errors name the file.
pub fn parse_config(
    path_for_messages: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, SourceError> {
    let path = path_for_messages;
    if text.trim().is_empty() {
        return Err(SourceError::Config {
            path: path.to_string(),
            message: "the file is empty; define at least one keyspace under `keyspaces:`."
                .to_string(),
        });
    }
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(path, &e))?;

    let mut keyspaces = Vec::with_capacity(raw.keyspaces.len());
    for (name, raw_ks) in raw.keyspaces {
        let database = raw_ks.database.map_or_else(|| name.clone(), |d| d.0);
        if is_reserved(&database) {
            return Err(SourceError::ReservedDatabase {
                path: path.to_string(),
                keyspace: name,
                database,
            });
        }
        let mut shards = Vec::with_capacity(raw_ks.shards.len());
        for raw_shard in raw_ks.shards {
            let dsn = expand_dsn(path, &name, &raw_shard.name, &raw_shard.dsn, env)?;
            let replicas = raw_shard
                .replicas
                .iter()
                .map(|r| expand_dsn(path, &name, &raw_shard.name, r, env))
                .collect::<Result<Vec<_>, _>>()?;
            shards.push(Shard {
                name: raw_shard.name,
                dsn,
                replicas,
            });
        }
        keyspaces.push(Keyspace {
            name,
            database,
            shards,
            foreign_keys: raw_ks.foreign_keys,
        });
    }
    keyspaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Config { keyspaces })
}

fn expand_dsn(
    path: &str,
    keyspace: &str,
    shard: &str,
    template: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Dsn, SourceError> {
    let expanded = expand(template, env).map_err(|e| match e {
        ExpandError::Unset(variable) => SourceError::UnsetVariable {
            path: path.to_string(),
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            variable,
        },
        ExpandError::Syntax(problem) => SourceError::DsnTemplate {
            path: path.to_string(),
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            problem: problem.to_string(),
        },
    })?;
    Dsn::parse(&expanded).map_err(|source| SourceError::Dsn {
        path: path.to_string(),
        keyspace: keyspace.to_string(),
        shard: shard.to_string(),
        source,
    })
}

fn is_reserved(database: &str) -> bool {
    // Compared case-insensitively: with lower_case_table_names set, case does not separate
    // databases.
    database
        .get(..METADATA_DATABASE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(METADATA_DATABASE))
}

/// Turns a yaml_serde error into `path:line:column: message`, keeping the position out of
/// the message and any DSN password out of it too.
fn yaml_error(path: &str, e: &serde_yaml::Error) -> SourceError {
    let mut message = e.to_string();
    let Some(loc) = e.location() else {
        return SourceError::Config {
            path: path.to_string(),
            message: format!("{}; fix the file and try again.", redact_userinfo(&message)),
        };
    };
    let (line, column) = (loc.line(), loc.column());
    // yaml_serde appends the position we already print as a prefix.
    message = message.replace(&format!(" at line {line} column {column}"), "");
    let message = redact_userinfo(&message);
    let remedy = if message.contains("unknown field") {
        "remove the key or correct its spelling"
    } else if message.contains("missing field") {
        "add the key"
    } else if message.contains("invalid type") {
        "change the value to the expected type"
    } else if message.contains("; ") {
        // Our own validators already say what to do.
        ""
    } else {
        "fix the YAML at that position"
    };
    let message = if remedy.is_empty() {
        format!("{message}.")
    } else {
        format!("{message}; {remedy}.")
    };
    SourceError::Yaml {
        path: path.to_string(),
        line,
        column,
        message,
    }
}

/// Replaces the password in anything that looks like `scheme://user:password@`, for messages
/// that quote a YAML value (serde's "invalid type: string ..." does).
fn redact_userinfo(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '/'))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

enum ExpandError {
    Unset(String),
    Syntax(&'static str),
}

/// Expands `${VAR}` and `$$`. A variable inside the user-info part (between `://` and the
/// `@`) is inserted percent-encoded, so the environment holds the password as it is, even
/// with `@`, `/` or `#` in it; elsewhere (e.g. `dsn: ${SHARD_DSN}`) it is inserted verbatim.
fn expand(template: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    enum Piece<'a> {
        Text(&'a str),
        Var(&'a str),
    }
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        pieces.push(Piece::Text(&rest[..i]));
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            pieces.push(Piece::Text("$"));
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(close) = tail.find('}') else {
                return Err(ExpandError::Syntax(
                    "has a `${` without its closing `}`; write ${NAME}, or $$ for a literal `$`",
                ));
            };
            let name = &tail[..close];
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ExpandError::Syntax(
                    "has a `${...}` whose variable name is not letters, digits and `_`; \
                     fix the name, or write $$ for a literal `$`",
                ));
            }
            pieces.push(Piece::Var(name));
            rest = &tail[close + 1..];
        } else {
            return Err(ExpandError::Syntax(
                "has a `$` that starts no ${NAME}; write $$ for a literal `$`",
            ));
        }
    }
    pieces.push(Piece::Text(rest));

    // Locate the user-info on the literal text alone, with every variable as one plain
    // character, so a variable's value cannot move the boundaries.
    let mut skeleton = String::new();
    let mut var_at = Vec::new();
    for piece in &pieces {
        match piece {
            Piece::Text(t) => skeleton.push_str(t),
            Piece::Var(_) => {
                var_at.push(skeleton.len());
                skeleton.push('v');
            }
        }
    }
    let userinfo = skeleton.find("://").and_then(|s| {
        let start = s + 3;
        let authority_end = skeleton[start..]
            .find(['/', '?', '#'])
            .map_or(skeleton.len(), |e| start + e);
        skeleton[start..authority_end]
            .rfind('@')
            .map(|at| start..start + at)
    });

    let mut out = String::with_capacity(template.len());
    let mut vars = var_at.into_iter();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => {
                let value = env(name).ok_or_else(|| ExpandError::Unset(name.to_string()))?;
                let at = vars.next().unwrap_or(usize::MAX);
                if userinfo.as_ref().is_some_and(|r| r.contains(&at)) {
                    out.push_str(&percent_encode(&value));
                } else {
                    out.push_str(&value);
                }
            }
        }
    }
    Ok(out)
}

// ---- Raw YAML shapes ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the key `keyspaces`")]
struct RawConfig {
    keyspaces: RawKeyspaces,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "keyspace settings: `shards` and optionally `database` and `foreign_keys`"
)]
struct RawKeyspace {
    #[serde(default)]
    database: Option<DatabaseName>,
    #[serde(default)]
    foreign_keys: ForeignKeys,
    shards: RawShards,
}

struct RawShard {
    name: String,
    dsn: String,
    replicas: Vec<String>,
}

/// Keyspaces in file order; names valid and unique.
struct RawKeyspaces(Vec<(String, RawKeyspace)>);

impl RawKeyspaces {
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl IntoIterator for RawKeyspaces {
    type Item = (String, RawKeyspace);
    type IntoIter = std::vec::IntoIter<(String, RawKeyspace)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'de> Deserialize<'de> for RawKeyspaces {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawKeyspaces;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping from keyspace names to keyspace settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                while let Some(name) = map.next_key_seed(NameSeed {
                    what: "keyspace",
                    seen: &seen,
                })? {
                    let ks: RawKeyspace = map.next_value()?;
                    seen.insert(name.clone());
                    out.push((name, ks));
                }
                if out.is_empty() {
                    return Err(de::Error::custom(
                        "no keyspaces are defined; add at least one under `keyspaces:`",
                    ));
                }
                Ok(RawKeyspaces(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct DatabaseName(String);

impl<'de> Deserialize<'de> for DatabaseName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seen = BTreeSet::new();
        NameSeed {
            what: "database",
            seen: &seen,
        }
        .deserialize(d)
        .map(DatabaseName)
    }
}

/// A keyspace, database or shard name, checked where it is read so the error has its
/// position; `seen` holds the names already used at the same level.
struct NameSeed<'a> {
    what: &'static str,
    seen: &'a BTreeSet<String>,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl NameSeed<'_> {
    fn check<E: de::Error>(&self, name: &str) -> Result<String, E> {
        let what = self.what;
        if name.is_empty() {
            return Err(E::custom(format!(
                "the {what} name is empty; give it a name"
            )));
        }
        if what != "shard" {
            let valid = name.len() <= MAX_NAME_LEN
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
            if !valid {
                return Err(E::custom(format!(
                    "{what} name `{name}` is not a valid identifier; use only letters, \
                     digits, `_` and `$`, at most {MAX_NAME_LEN} characters"
                )));
            }
        }
        if self.seen.contains(name) {
            let scope = if what == "shard" {
                "in this keyspace"
            } else {
                "in schemagate.yaml"
            };
            return Err(E::custom(format!(
                "{what} `{name}` is defined more than once {scope}; give each {what} a \
                 unique name"
            )));
        }
        Ok(name.to_string())
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} name", self.what)
    }

    // yaml_serde hands plain scalars such as `-80` to visit_str when a string is asked for.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.check(v)
    }
}

/// Shards in file order; at least one, names unique.
struct RawShards(Vec<RawShard>);

impl RawShards {
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl IntoIterator for RawShards {
    type Item = RawShard;
    type IntoIter = std::vec::IntoIter<RawShard>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'de> Deserialize<'de> for RawShards {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawShards;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of shards, each with `name` and `dsn`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                while let Some(shard) = seq.next_element_seed(ShardSeed { seen: &seen })? {
                    seen.insert(shard.name.clone());
                    out.push(shard);
                }
                if out.is_empty() {
                    return Err(de::Error::custom(
                        "the keyspace has no shards; list at least one under `shards:` \
                         with `name` and `dsn`",
                    ));
                }
                Ok(RawShards(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One shard entry, written by hand so its name can be checked against the names before it.
struct ShardSeed<'a> {
    seen: &'a BTreeSet<String>,
}

impl<'de> DeserializeSeed<'de> for ShardSeed<'_> {
    type Value = RawShard;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawShard, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ShardSeed<'_> {
    type Value = RawShard;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a shard with `name` and `dsn`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawShard, A::Error> {
        let mut name = None;
        let mut dsn = None;
        let mut replicas = None;
        while let Some(field) = map.next_key_seed(ShardField {
            have_name: name.is_some(),
            have_dsn: dsn.is_some(),
            have_replicas: replicas.is_some(),
        })? {
            match field {
                Field::Name => {
                    name = Some(map.next_value_seed(NameSeed {
                        what: "shard",
                        seen: self.seen,
                    })?)
                }
                Field::Dsn => dsn = Some(map.next_value::<String>()?),
                Field::Replicas => replicas = Some(map.next_value::<Vec<String>>()?),
            }
        }
        Ok(RawShard {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            dsn: dsn.ok_or_else(|| de::Error::missing_field("dsn"))?,
            replicas: replicas.unwrap_or_default(),
        })
    }
}

enum Field {
    Name,
    Dsn,
    Replicas,
}

/// A shard's key, checked as it is read so unknown and repeated keys get their own position.
struct ShardField {
    have_name: bool,
    have_dsn: bool,
    have_replicas: bool,
}

impl<'de> DeserializeSeed<'de> for ShardField {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ShardField {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`name`, `dsn` or `replicas`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        match v {
            "name" if self.have_name => Err(E::duplicate_field("name")),
            "name" => Ok(Field::Name),
            "dsn" if self.have_dsn => Err(E::duplicate_field("dsn")),
            "dsn" => Ok(Field::Dsn),
            "replicas" if self.have_replicas => Err(E::duplicate_field("replicas")),
            "replicas" => Ok(Field::Replicas),
            other => Err(E::unknown_field(other, &["name", "dsn", "replicas"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commerce_replicas_empty(config: &Config) -> bool {
        config
            .keyspace("commerce")
            .is_some_and(|k| k.shards.iter().all(|s| s.replicas.is_empty()))
    }

    const SECRET: &str = "hunter2-Sekrit";

    fn env(name: &str) -> Option<String> {
        match name {
            "SHARD_PASSWORD" => Some(SECRET.to_string()),
            "ODD_PASSWORD" => Some("p@ss/w#rd?%".to_string()),
            "SHARD_DSN" => Some(format!("mysql://app:{SECRET}@10.0.0.9:3310")),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config, SourceError> {
        parse_config("schemagate.yaml", text, &env)
    }

    fn err(text: &str) -> String {
        let e = parse(text).expect_err("should fail");
        let msg = e.to_string();
        assert!(!msg.contains(SECRET), "password leaked: {msg}");
        assert!(!format!("{e:?}").contains(SECRET), "password leaked: {e:?}");
        msg
    }

    const EXAMPLE: &str = r#"
keyspaces:
  commerce:
    database: commerce_db
    shards:
      - name: "-80"
        dsn: mysql://app:${SHARD_PASSWORD}@10.0.0.1:3306
      - name: "80-"
        dsn: mysql://app:${SHARD_PASSWORD}@10.0.0.2
  audit:
    shards:
      - name: "0"
        dsn: mariadb://auditor@10.0.0.3:3307?tcp_nodelay=true
        replicas:
          - mysql://auditor:${SHARD_PASSWORD}@10.0.0.13:3307
"#;

    #[test]
    fn parses_example_sorted_with_default_database() {
        let config = parse(EXAMPLE).unwrap();
        let names: Vec<_> = config.keyspaces.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["audit", "commerce"]);
        let audit = config.keyspace("audit").unwrap();
        assert_eq!(audit.database, "audit");
        assert_eq!(audit.shards[0].dsn.port(), 3307);
        assert_eq!(audit.shards[0].replicas.len(), 1);
        assert_eq!(audit.shards[0].replicas[0].password(), Some(SECRET));
        assert!(commerce_replicas_empty(&config));
        assert_eq!(audit.shards[0].dsn.password(), None);
        let commerce = config.keyspace("commerce").unwrap();
        assert_eq!(commerce.database, "commerce_db");
        assert_eq!(commerce.shards.len(), 2);
        assert_eq!(commerce.shards[0].name, "-80");
        assert_eq!(commerce.shards[0].dsn.password(), Some(SECRET));
        assert_eq!(commerce.shards[1].dsn.host(), "10.0.0.2");
        assert_eq!(commerce.shards[1].dsn.port(), 3306);
        assert!(config.keyspace("nope").is_none());
    }

    #[test]
    fn foreign_keys_default_to_refuse_and_take_carry() {
        let config = parse(EXAMPLE).unwrap();
        assert!(config
            .keyspaces
            .iter()
            .all(|k| k.foreign_keys == ForeignKeys::Refuse));
        let shards = "    shards:\n      - name: a\n        dsn: mysql://app@h\n";
        let carry = parse(&format!(
            "keyspaces:\n  ks:\n    foreign_keys: carry\n{shards}"
        ))
        .unwrap();
        assert_eq!(carry.keyspaces[0].foreign_keys, ForeignKeys::Carry);
        let msg = err(&format!(
            "keyspaces:\n  ks:\n    foreign_keys: rebuild\n{shards}"
        ));
        assert!(msg.starts_with("schemagate.yaml:3:"), "{msg}");
        assert!(msg.contains("refuse") && msg.contains("carry"), "{msg}");
    }

    #[test]
    fn debug_and_display_do_not_leak_the_password() {
        let config = parse(EXAMPLE).unwrap();
        for text in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{:?}", config.keyspaces[1].shards[0]),
            config.keyspaces[1].shards[0].dsn.to_string(),
        ] {
            assert!(!text.contains(SECRET), "{text}");
        }
        assert_eq!(
            config.keyspaces[1].shards[0].dsn.to_string(),
            "mysql://app:***@10.0.0.1:3306"
        );
    }

    #[test]
    fn variables_in_userinfo_are_percent_encoded_and_whole_dsn_variables_are_not() {
        let config = parse(
            "keyspaces:\n  ks:\n    shards:\n      - name: a\n        dsn: mysql://app:${ODD_PASSWORD}@h\n      - name: b\n        dsn: ${SHARD_DSN}\n      - name: c\n        dsn: mysql://app:pa$$word@h\n",
        )
        .unwrap();
        let shards = &config.keyspaces[0].shards;
        assert_eq!(shards[0].dsn.password(), Some("p@ss/w#rd?%"));
        assert_eq!(shards[0].dsn.host(), "h");
        assert_eq!(shards[1].dsn.password(), Some(SECRET));
        assert_eq!(shards[1].dsn.port(), 3310);
        assert_eq!(shards[2].dsn.password(), Some("pa$word"));
    }

    #[test]
    fn percent_encoded_literal_password() {
        let config = parse(
            "keyspaces:\n  ks:\n    shards:\n      - name: a\n        dsn: mysql://app:p%40ss%2Fword@h\n",
        )
        .unwrap();
        assert_eq!(
            config.keyspaces[0].shards[0].dsn.password(),
            Some("p@ss/word")
        );
    }

    #[test]
    fn unset_variable_names_variable_keyspace_and_shard() {
        let msg = err(
            "keyspaces:\n  ks:\n    shards:\n      - name: \"-80\"\n        dsn: mysql://app:${NOPE}@h\n",
        );
        assert!(msg.contains("NOPE"), "{msg}");
        assert!(msg.contains("keyspace `ks`"), "{msg}");
        assert!(msg.contains("shard `-80`"), "{msg}");
        assert!(msg.starts_with("schemagate.yaml: "), "{msg}");
    }

    #[test]
    fn template_syntax_errors() {
        for dsn in [
            "mysql://app:${X@h",
            "mysql://app:$x@h",
            "mysql://app:${1A}@h",
        ] {
            let msg = err(&format!(
                "keyspaces:\n  ks:\n    shards:\n      - name: a\n        dsn: {dsn}\n"
            ));
            assert!(msg.contains("$$"), "{msg}");
            assert!(msg.contains("shard `a`"), "{msg}");
        }
    }

    #[test]
    fn unknown_key_has_line_and_column() {
        let msg = err("keyspaces:\n  ks:\n    shard:\n      - name: a\n");
        assert!(msg.starts_with("schemagate.yaml:3:5: "), "{msg}");
        assert!(msg.contains("unknown field `shard`"), "{msg}");
        let msg = err(&format!(
            "keyspaces:\n  ks:\n    shards:\n      - name: a\n        dsn: mysql://app:{SECRET}@h\n        port: 3306\n"
        ));
        assert!(msg.starts_with("schemagate.yaml:6:9: "), "{msg}");
        assert!(msg.contains("unknown field `port`"), "{msg}");
        let msg = err("keyspaces:\n  ks:\n    shards: [{name: a, dsn: 'mysql://a@h'}]\nextra: 1\n");
        assert!(msg.starts_with("schemagate.yaml:4:1: "), "{msg}");
    }

    #[test]
    fn invalid_yaml_has_line_and_column() {
        let msg = err("keyspaces:\n  ks:\n    shards: [\n      - name: a\n");
        assert!(msg.starts_with("schemagate.yaml:"), "{msg}");
        let e = parse("keyspaces:\n  ks: {\n").unwrap_err();
        assert!(matches!(e, SourceError::Yaml { .. }), "{e}");
        let e = parse("keyspaces:\n\tks:\n").unwrap_err();
        match e {
            SourceError::Yaml { line, column, .. } => assert_eq!((line, column), (2, 1)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn duplicate_shard_names_point_at_the_second() {
        let msg = err(
            "keyspaces:\n  ks:\n    shards:\n      - name: a\n        dsn: mysql://a@h\n      - name: a\n        dsn: mysql://a@h2\n",
        );
        assert!(msg.starts_with("schemagate.yaml:6:15: "), "{msg}");
        assert!(msg.contains("shard `a` is defined more than once"), "{msg}");
        assert!(msg.contains("ks"), "{msg}");
    }

    #[test]
    fn duplicate_keyspaces_are_rejected() {
        let msg = err(
            "keyspaces:\n  ks:\n    shards: [{name: a, dsn: 'mysql://a@h'}]\n  ks:\n    shards: [{name: a, dsn: 'mysql://a@h'}]\n",
        );
        assert!(msg.starts_with("schemagate.yaml:4:3: "), "{msg}");
        assert!(
            msg.contains("keyspace `ks` is defined more than once"),
            "{msg}"
        );
    }

    #[test]
    fn structural_validation() {
        let msg = err("keyspaces: {}\n");
        assert!(msg.contains("no keyspaces are defined"), "{msg}");
        let msg = err("keyspaces:\n  ks:\n    shards: []\n");
        assert!(msg.contains("no shards"), "{msg}");
        assert!(msg.starts_with("schemagate.yaml:3:13: "), "{msg}");
        let msg =
            err("keyspaces:\n  ks:\n    shards:\n      - name: ''\n        dsn: mysql://a@h\n");
        assert!(msg.contains("shard name is empty"), "{msg}");
        let unquoted =
            parse("keyspaces:\n  ks:\n    shards:\n      - name: -80\n        dsn: mysql://a@h\n");
        assert_eq!(unquoted.unwrap().keyspaces[0].shards[0].name, "-80");
        let msg = err("keyspaces:\n  ks:\n    shards:\n      - name: a\n        name: b\n        dsn: mysql://a@h\n");
        assert!(msg.starts_with("schemagate.yaml:5:9: "), "{msg}");
        assert!(msg.contains("duplicate field `name`"), "{msg}");
        let msg = err("keyspaces:\n  ks:\n    shards:\n      - dsn: mysql://a@h\n");
        assert!(msg.contains("missing field `name`"), "{msg}");
        let msg = err("");
        assert!(msg.contains("empty"), "{msg}");
        let msg = err("keyspaces:\n");
        assert!(msg.starts_with("schemagate.yaml:1:11: "), "{msg}");
        let msg = err("- a\n");
        assert!(
            msg.contains("expected a mapping with the key `keyspaces`"),
            "{msg}"
        );
    }

    #[test]
    fn names_must_be_identifiers() {
        let shards = "    shards: [{name: a, dsn: 'mysql://a@h'}]\n";
        let msg = err(&format!("keyspaces:\n  my-ks:\n{shards}"));
        assert!(msg.starts_with("schemagate.yaml:2:3: "), "{msg}");
        assert!(
            msg.contains("keyspace name `my-ks` is not a valid identifier"),
            "{msg}"
        );
        let msg = err(&format!("keyspaces:\n  ks:\n    database: a-b\n{shards}"));
        assert!(msg.starts_with("schemagate.yaml:3:15: "), "{msg}");
        assert!(msg.contains("database name `a-b`"), "{msg}");
        let long = "x".repeat(65);
        let msg = err(&format!("keyspaces:\n  {long}:\n{shards}"));
        assert!(msg.contains("at most 64"), "{msg}");
        let ok = "y".repeat(64);
        assert!(parse(&format!(
            "keyspaces:\n  {ok}:\n    database: a$b_9\n{shards}"
        ))
        .is_ok());
        let msg = err(&format!(
            "keyspaces:\n  ks:\n    database: _schemagate_x\n{shards}"
        ));
        assert!(msg.contains("reserved"), "{msg}");
        let msg = err(&format!("keyspaces:\n  _SchemaGate:\n{shards}"));
        assert!(msg.contains("reserved"), "{msg}");
    }

    #[test]
    fn dsn_errors_name_keyspace_and_shard_without_the_password() {
        for dsn in [
            format!("postgres://app:{SECRET}@h"),
            format!("mysql://app:{SECRET}@h/db"),
            format!("mysql://app:{SECRET}@h?foo=1"),
            format!("mysql://app:{SECRET}/x@h"),
            "mysql://app:${SHARD_PASSWORD}@h:0".to_string(),
            "mysql://app:${SHARD_PASSWORD}@h?nope=1".to_string(),
        ] {
            let msg = err(&format!(
                "keyspaces:\n  ks:\n    shards:\n      - name: s1\n        dsn: \"{dsn}\"\n"
            ));
            assert!(msg.contains("keyspace `ks`, shard `s1`"), "{msg}");
        }
    }

    #[test]
    fn yaml_errors_quoting_a_dsn_are_redacted() {
        // A DSN where a list was expected: serde quotes the string in its message.
        let msg = err(&format!(
            "keyspaces:\n  ks:\n    shards: mysql://app:{SECRET}@h:3306\n"
        ));
        assert!(msg.contains("mysql://app:***@h:3306"), "{msg}");
        let msg = err(&format!("keyspaces:\n  ks: \"mysql://app:{SECRET}@h\"\n"));
        assert!(msg.starts_with("schemagate.yaml:2:7: "), "{msg}");
    }

    #[test]
    fn redaction_helper() {
        assert_eq!(
            redact_userinfo("a \"mysql://u:p@h\" and x://y@z and mysql://u:p:q@h/p"),
            "a \"mysql://u:***@h\" and x://y@z and mysql://u:***@h/p"
        );
    }
}
