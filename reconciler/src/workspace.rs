//! Scratch databases on a real server. The server is the authority on canonical form: the
//! desired CREATE TABLE statements are run in a workspace and read back with `SHOW CREATE
//! TABLE` (Skeema's approach), and every planned statement is rehearsed on empty copies of the
//! live tables before it is shown to anyone.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use mysql_async::prelude::*;

use crate::diff::{Change, DiffError};
use crate::live::{quote, LiveError, ServerFlavor, ShardConn};
use crate::naming::{METADATA_DATABASE, WORKSPACE_PREFIX};
use crate::schema::{DesiredTable, SchemaError, Table};

const PARALLEL_CREATES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(transparent)]
    Live(#[from] LiveError),
    /// The server rejected desired definitions; each is located in its file.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Rejected(Vec<SchemaError>),
}

/// A database that exists only while the tool needs it.
pub struct Workspace {
    conn: ShardConn,
    pub database: String,
}

fn fresh_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{WORKSPACE_PREFIX}{}_{}_{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Workspace {
    /// Creates an empty database with the same defaults as the keyspace's database.
    pub async fn create(conn: &ShardConn, flavor: &ServerFlavor) -> Result<Workspace, LiveError> {
        let database = fresh_name();
        let mut c = conn.conn().await?;
        c.query_drop(format!(
            "CREATE DATABASE {} DEFAULT CHARACTER SET {} COLLATE {}",
            quote(&database),
            flavor.charset,
            flavor.collation
        ))
        .await
        .map_err(|e| {
            conn.query_error(
                "creating a workspace database (the DSN's user needs CREATE and DROP)",
                e,
            )
        })?;
        Ok(Workspace {
            conn: conn.clone(),
            database,
        })
    }

    /// Runs `statements` in the workspace, one connection per batch, foreign key checks off so
    /// that order does not matter. Returns the index and error of each failed statement.
    async fn run_unchecked(
        &self,
        statements: &[String],
    ) -> Result<Vec<(usize, String)>, LiveError> {
        let chunk = statements.len().div_ceil(PARALLEL_CREATES).max(1);
        let indexed: Vec<(usize, &String)> = statements.iter().enumerate().collect();
        futures::stream::iter(indexed.chunks(chunk))
            .map(|batch| async move {
                let mut c = self.conn.conn().await?;
                c.query_drop(format!("USE {}", quote(&self.database)))
                    .await
                    .map_err(|e| self.conn.query_error("entering the workspace", e))?;
                c.query_drop("SET SESSION foreign_key_checks = 0")
                    .await
                    .map_err(|e| self.conn.query_error("preparing the workspace", e))?;
                let mut failed = Vec::new();
                for (i, statement) in batch {
                    if let Err(e) = c.query_drop(statement.as_str()).await {
                        failed.push((*i, server_message(&e)));
                    }
                }
                Ok::<_, LiveError>(failed)
            })
            .buffer_unordered(PARALLEL_CREATES)
            .try_fold(Vec::new(), |mut all, part| async move {
                all.extend(part);
                Ok(all)
            })
            .await
    }

    /// The canonical text of each desired table, as this server shows it.
    pub async fn canonical_texts(
        &self,
        tables: &[&DesiredTable],
    ) -> Result<Vec<(String, String)>, WorkspaceError> {
        let (quick, slow): (Vec<&DesiredTable>, Vec<&DesiredTable>) =
            tables.iter().partition(|t| as_temporary(&t.sql).is_some());
        let mut texts = Vec::with_capacity(tables.len());
        let mut rest = slow;
        for (table, text) in self.temporary_texts(&quick).await? {
            match text {
                Some(text) => texts.push((table.name.clone(), text)),
                None => rest.push(table),
            }
        }
        if rest.is_empty() {
            return Ok(texts);
        }
        let statements: Vec<String> = rest.iter().map(|t| t.sql.clone()).collect();
        let failed = self.run_unchecked(&statements).await?;
        if !failed.is_empty() {
            let mut errors: Vec<SchemaError> = failed
                .into_iter()
                .map(|(i, message)| {
                    let t = rest[i];
                    SchemaError::at(
                        &t.file,
                        t.line,
                        1,
                        format!("the server rejected CREATE TABLE `{}`: {message}", t.name),
                    )
                })
                .collect();
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(WorkspaceError::Rejected(errors));
        }
        let names: Vec<String> = rest.iter().map(|t| t.name.clone()).collect();
        texts.extend(self.conn.show_create(&self.database, &names).await?);
        Ok(texts)
    }

    /// Canonical texts through temporary tables, which cost no file creation and no fsync;
    /// `None` for a table the server would not create as temporary (it then takes the slow
    /// path, which also reports its errors).
    async fn temporary_texts<'t>(
        &self,
        tables: &[&'t DesiredTable],
    ) -> Result<Vec<(&'t DesiredTable, Option<String>)>, LiveError> {
        let chunk = tables.len().div_ceil(PARALLEL_CREATES).max(1);
        futures::stream::iter(tables.chunks(chunk))
            .map(|batch| async move {
                // Temporary tables live in this one connection; the pool's reset drops them.
                let mut c = self.conn.conn().await?;
                c.query_drop(format!("USE {}", quote(&self.database)))
                    .await
                    .map_err(|e| self.conn.query_error("entering the workspace", e))?;
                let mut out = Vec::with_capacity(batch.len());
                for table in batch {
                    let Some(sql) = as_temporary(&table.sql) else {
                        out.push((*table, None));
                        continue;
                    };
                    if c.query_drop(sql).await.is_err() {
                        out.push((*table, None));
                        continue;
                    }
                    let row: Option<(String, String)> = c
                        .query_first(format!("SHOW CREATE TABLE {}", quote(&table.name)))
                        .await
                        .map_err(|e| self.conn.query_error("reading a workspace table", e))?;
                    let text = row.and_then(|(_, text)| {
                        text.strip_prefix("CREATE TEMPORARY TABLE ")
                            .map(|rest| format!("CREATE TABLE {rest}"))
                    });
                    out.push((*table, text));
                }
                Ok::<_, LiveError>(out)
            })
            .buffer_unordered(PARALLEL_CREATES)
            .try_fold(Vec::new(), |mut all, part| async move {
                all.extend(part);
                Ok(all)
            })
            .await
    }

    /// Rehearses `changes` on empty copies of the live tables they touch and checks that each
    /// table ends up exactly as desired. Returns one error per table that does not.
    pub async fn verify(
        &self,
        live: &BTreeMap<String, Table>,
        desired: &BTreeMap<String, Table>,
        changes: &[Change],
    ) -> Result<Vec<DiffError>, LiveError> {
        // The touched tables and every live table they reference, so foreign keys resolve.
        let mut needed: Vec<&Table> = Vec::new();
        let mut queue: Vec<&str> = changes.iter().map(|c| c.table.as_str()).collect();
        for t in desired.values() {
            if changes.iter().any(|c| c.table == t.name) {
                queue.extend(t.foreign_keys.iter().map(|f| f.referenced_table.as_str()));
            }
        }
        while let Some(name) = queue.pop() {
            let Some(table) = live.get(name) else {
                continue;
            };
            if needed.iter().any(|t| t.name == name) {
                continue;
            }
            queue.extend(
                table
                    .foreign_keys
                    .iter()
                    .map(|f| f.referenced_table.as_str()),
            );
            needed.push(table);
        }
        let setup: Vec<String> = needed.iter().map(|t| t.create_sql.clone()).collect();
        let failed = self.run_unchecked(&setup).await?;
        if let Some((i, message)) = failed.into_iter().next() {
            return Ok(vec![DiffError {
                table: needed[i].name.clone(),
                message: format!("cannot copy the live definition into a workspace to verify the plan: {message}"),
            }]);
        }

        let mut errors: Vec<DiffError> = Vec::new();
        let mut c = self.conn.conn().await?;
        c.query_drop(format!("USE {}", quote(&self.database)))
            .await
            .map_err(|e| self.conn.query_error("entering the workspace", e))?;
        for change in changes {
            if errors.iter().any(|e| e.table == change.table) {
                continue;
            }
            if let Err(e) = c.query_drop(change.statement.as_str()).await {
                errors.push(DiffError {
                    table: change.table.clone(),
                    message: format!(
                        "the planned statement fails on an empty copy of the table ({}): {}",
                        server_message(&e),
                        change.statement
                    ),
                });
            }
        }
        drop(c);

        let mut touched: Vec<String> = changes
            .iter()
            .filter(|c| desired.contains_key(&c.table))
            .map(|c| c.table.clone())
            .filter(|t| !errors.iter().any(|e| &e.table == t))
            .collect();
        touched.sort();
        touched.dedup();
        let result = self.conn.show_create(&self.database, &touched).await?;
        for (name, create) in result {
            let Some(want) = desired.get(&name) else {
                continue;
            };
            let got = match Table::parse_canonical(&create) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(DiffError {
                        table: name,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            if !converged(&got, want) {
                errors.push(DiffError {
                    table: name,
                    message: format!(
                        "the planned DDL would not produce the desired table, so it is withheld (please report this).\n  expected: {}\n  got:      {}",
                        want.create_sql.replace('\n', " "),
                        got.create_sql.replace('\n', " ")
                    ),
                });
            }
        }
        Ok(errors)
    }

    pub async fn drop(self) -> Result<(), LiveError> {
        let mut c = self.conn.conn().await?;
        c.query_drop(format!("DROP DATABASE IF EXISTS {}", quote(&self.database)))
            .await
            .map_err(|e| self.conn.query_error("dropping the workspace database", e))
    }
}

/// Equal as the server shows them; the order of secondary indexes is cosmetic (the server
/// orders a table's keys by kind, then by creation), so it does not count.
/// Words that make a temporary table differ from the permanent one (or impossible): foreign
/// keys, partitions, FULLTEXT, compression, encryption, storage placement, statistics options.
const NOT_TEMPORARY: &[&str] = &[
    "FOREIGN",
    "REFERENCES",
    "PARTITION",
    "FULLTEXT",
    "COMPRESS",
    "KEY_BLOCK_SIZE",
    "ENCRYPT",
    "DIRECTORY",
    "TABLESPACE",
    "STORAGE",
    "STATS_",
    "UNION",
    "CONNECTION",
    "VERSIONING",
    "SEQUENCE",
    "TRANSACTIONAL",
    "PAGE_CHECKSUM",
];

/// The statement as `CREATE TEMPORARY TABLE …`, when a temporary table shows exactly what the
/// permanent one would (checked against real tables by the sqldef conformance suite).
fn as_temporary(sql: &str) -> Option<String> {
    let upper = sql.to_ascii_uppercase();
    if NOT_TEMPORARY.iter().any(|w| upper.contains(w)) {
        return None;
    }
    let rest = upper.strip_prefix("CREATE")?;
    let gap = rest.len() - rest.trim_start().len();
    rest.trim_start()
        .starts_with("TABLE")
        .then(|| format!("CREATE TEMPORARY {}", &sql["CREATE".len() + gap..]))
}

/// The key under which a desired table's canonical text is cached: everything that decides
/// what the server makes of the statement.
pub fn cache_key(flavor: &ServerFlavor, table: &DesiredTable) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [
        &flavor.version,
        &flavor.charset,
        &flavor.collation,
        &flavor.settings,
        &table.name,
        &table.sql,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn cache_table() -> String {
    format!("{}.canonical", quote(METADATA_DATABASE))
}

/// Cached canonical texts for `keys` on this server (creating the cache table if needed).
pub async fn cached(
    conn: &ShardConn,
    keys: &[String],
) -> Result<HashMap<String, String>, LiveError> {
    conn.run_script(&format!(
        "CREATE DATABASE IF NOT EXISTS {db}; CREATE TABLE IF NOT EXISTS {table} (\
           cache_key CHAR(64) NOT NULL PRIMARY KEY, create_sql LONGTEXT NOT NULL, \
           created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, KEY created_at (created_at)\
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        db = quote(METADATA_DATABASE),
        table = cache_table()
    ))
    .await?;
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let mut c = conn.conn().await?;
    let marks = vec!["?"; keys.len()].join(",");
    let rows: Vec<(String, String)> = c
        .exec(
            format!(
                "SELECT cache_key, create_sql FROM {} WHERE cache_key IN ({marks})",
                cache_table()
            ),
            keys.to_vec(),
        )
        .await
        .map_err(|e| conn.query_error("reading the canonical-form cache", e))?;
    Ok(rows.into_iter().collect())
}

/// Stores canonical texts; entries older than 30 days are pruned (and recomputed when needed).
pub async fn remember(conn: &ShardConn, entries: &[(String, String)]) -> Result<(), LiveError> {
    let mut c = conn.conn().await?;
    let err = |e| conn.query_error("writing the canonical-form cache", e);
    for chunk in entries.chunks(200) {
        let marks = vec!["(?, ?)"; chunk.len()].join(",");
        let params: Vec<mysql_async::Value> = chunk
            .iter()
            .flat_map(|(k, v)| [k.as_str().into(), v.as_str().into()])
            .collect();
        c.exec_drop(
            format!(
                "INSERT IGNORE INTO {} (cache_key, create_sql) VALUES {marks}",
                cache_table()
            ),
            params,
        )
        .await
        .map_err(err)?;
    }
    c.query_drop(format!(
        "DELETE FROM {} WHERE created_at < NOW() - INTERVAL 30 DAY",
        cache_table()
    ))
    .await
    .map_err(err)
}

pub fn converged(got: &Table, want: &Table) -> bool {
    if got.create_sql == want.create_sql {
        return true;
    }
    let mut a = got.clone();
    let mut b = want.clone();
    for t in [&mut a, &mut b] {
        t.indexes.sort_by(|x, y| x.definition.cmp(&y.definition));
        t.create_sql.clear();
    }
    a == b
}

fn server_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("error {}: {}", s.code, s.message),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tables_take_the_temporary_path() {
        assert_eq!(
            as_temporary("create  table t (id int)").as_deref(),
            Some("CREATE TEMPORARY table t (id int)")
        );
        assert_eq!(
            as_temporary("CREATE TABLE `t` (`id` int) ENGINE=InnoDB").as_deref(),
            Some("CREATE TEMPORARY TABLE `t` (`id` int) ENGINE=InnoDB")
        );
        for sql in [
            "create table t (a int, foreign key (a) references p (id))",
            "create table t (a int) partition by hash (a)",
            "create table t (a text, fulltext (a))",
            "create table t (a int) row_format=compressed",
            "create or replace table t (a int)",
        ] {
            assert_eq!(as_temporary(sql), None, "{sql}");
        }
    }
}
