//! The desired state, as users keep it in Git:
//!
//! ```text
//! <repo>/schemagate.yaml            keyspaces, databases, shards and their DSNs
//! <repo>/schemas/<keyspace>/*.sql   CREATE TABLE files (other files ignored, not recursive)
//! ```
//!
//! [`load`] reads it from the files on disk, or with a revision from that commit's tree
//! (through git2, without a checkout). `<repo>` may be a subdirectory of the Git work tree.

mod config;
mod dsn;
mod error;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub use config::parse_config;
pub use dsn::{Dsn, DsnError, KNOWN_PARAMS};
pub use error::SourceError;

use tree::{EntryKind, GitTree, Tree, WorkTree};

/// The configuration file, relative to the repository directory.
pub const CONFIG_FILE: &str = "schemagate.yaml";

/// The directory holding one subdirectory of CREATE TABLE files per keyspace.
pub const SCHEMAS_DIR: &str = "schemas";

/// One shard of a keyspace: a server (or server group behind one DSN) holding the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub name: String,
    pub dsn: Dsn,
    /// Replicas of this shard's primary: the online copy slows down while they lag.
    pub replicas: Vec<Dsn>,
}

/// A keyspace: one logical database, the same schema on every shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    pub name: String,
    /// The database name on the servers; the keyspace name unless configured.
    pub database: String,
    /// In file order; never empty, names unique.
    pub shards: Vec<Shard>,
    pub foreign_keys: ForeignKeys,
}

/// What the shadow strategy does with a table that has foreign keys of its own (`foreign_keys:`
/// in `schemagate.yaml`). Tables other tables reference are refused either way: the swap would
/// leave those references on the old table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForeignKeys {
    /// Refuse the change up front.
    #[default]
    Refuse,
    /// The shadow gets the table's (new) foreign keys under temporary names, which take their
    /// own names back right after the seal.
    Carry,
}

/// The validated `schemagate.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Sorted by name; never empty.
    pub keyspaces: Vec<Keyspace>,
}

impl Config {
    pub fn keyspace(&self, name: &str) -> Option<&Keyspace> {
        self.keyspaces
            .binary_search_by(|k| k.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.keyspaces[i])
    }
}

/// One `.sql` file of a keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    /// Relative to the repository directory, with `/`: `schemas/commerce/users.sql`.
    pub path: String,
    /// The contents, without a leading UTF-8 byte order mark.
    pub text: String,
}

/// Everything the repository says the fleet should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub config: Config,
    /// Every keyspace of the config, each with its files sorted by path (possibly none).
    pub files: BTreeMap<String, Vec<SchemaFile>>,
    /// The resolved commit id (full hex) when read from a Git revision.
    pub revision: Option<String>,
}

/// Reads the desired state from `repo`: the files on disk, or with `rev` the tree of that
/// commit. `${VAR}` in DSNs is taken from the process environment.
pub async fn load(repo: &Path, rev: Option<&str>) -> Result<Desired, SourceError> {
    let repo = repo.to_path_buf();
    let rev = rev.map(str::to_string);
    // git2 and std::fs block.
    tokio::task::spawn_blocking(move || read_desired(&repo, rev.as_deref(), &process_env)).await?
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn read_desired(
    repo: &Path,
    rev: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Desired, SourceError> {
    let (config, files, revision) = match rev {
        None => {
            let tree = WorkTree::open(repo)?;
            let (config, files) = read_tree(&tree, env)?;
            (config, files, None)
        }
        Some(rev) => {
            let tree = GitTree::open(repo, rev)?;
            let (config, files) = read_tree(&tree, env)?;
            (config, files, Some(tree.commit().to_string()))
        }
    };
    tracing::debug!(
        repo = %repo.display(),
        revision = revision.as_deref().unwrap_or("working tree"),
        keyspaces = config.keyspaces.len(),
        files = files.values().map(Vec::len).sum::<usize>(),
        "read desired state"
    );
    Ok(Desired {
        config,
        files,
        revision,
    })
}

type Files = BTreeMap<String, Vec<SchemaFile>>;

fn read_tree(
    tree: &dyn Tree,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Files), SourceError> {
    let text = read_text(tree, CONFIG_FILE)?.ok_or_else(|| SourceError::MissingConfig {
        path: CONFIG_FILE.to_string(),
        place: tree.place().to_string(),
    })?;
    let config = parse_config(CONFIG_FILE, &text, env)?;

    // Dot-directories are never keyspaces (names are identifiers), so they are not typos.
    let dirs: BTreeSet<String> = tree
        .list(SCHEMAS_DIR)?
        .unwrap_or_default()
        .into_iter()
        .filter(|e| matches!(e.kind, EntryKind::Dir) && !e.name.starts_with('.'))
        .map(|e| e.name)
        .collect();
    if let Some(unknown) = dirs.iter().find(|d| config.keyspace(d).is_none()) {
        let names: Vec<&str> = config.keyspaces.iter().map(|k| k.name.as_str()).collect();
        return Err(SourceError::UnknownSchemaDir {
            dir: format!("{SCHEMAS_DIR}/{unknown}"),
            place: tree.place().to_string(),
            keyspaces: names.join(", "),
        });
    }

    let mut files = BTreeMap::new();
    for ks in &config.keyspaces {
        let dir = format!("{SCHEMAS_DIR}/{}", ks.name);
        let entries = match tree.list(&dir)? {
            Some(entries) if dirs.contains(&ks.name) => entries,
            _ => {
                return Err(SourceError::MissingSchemaDir {
                    keyspace: ks.name.clone(),
                    dir,
                    place: tree.place().to_string(),
                })
            }
        };
        let mut ks_files = Vec::new();
        for entry in entries {
            // Dot-files include editors' lock files (`.#users.sql`, often dangling links).
            if !entry.name.ends_with(".sql") || entry.name.starts_with('.') {
                continue;
            }
            let path = format!("{dir}/{}", entry.name);
            match entry.kind {
                EntryKind::File => {}
                // Not recursive: a directory is not a schema file, whatever its name.
                EntryKind::Dir => continue,
                EntryKind::Other(kind) => {
                    return Err(SourceError::UnsupportedEntry {
                        path,
                        place: tree.place().to_string(),
                        kind,
                        expected: "file",
                    })
                }
            }
            let text = read_text(tree, &path)?.ok_or_else(|| SourceError::Read {
                path: path.clone(),
                place: tree.place().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "it disappeared while being read",
                ),
            })?;
            ks_files.push(SchemaFile { path, text });
        }
        ks_files.sort_by(|a, b| a.path.cmp(&b.path));
        files.insert(ks.name.clone(), ks_files);
    }
    Ok((config, files))
}

fn read_text(tree: &dyn Tree, path: &str) -> Result<Option<String>, SourceError> {
    let Some(mut bytes) = tree.read(path)? else {
        return Ok(None);
    };
    // Some Windows editors write a byte order mark; SQL parsers do not expect one.
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| SourceError::NotUtf8 {
            path: path.to_string(),
            place: tree.place().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    const SECRET: &str = "Tr0ub4dor-3";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    const CONFIG: &str = "keyspaces:\n  commerce:\n    shards:\n      - name: \"-80\"\n        dsn: mysql://app@10.0.0.1\n      - name: \"80-\"\n        dsn: mysql://app@10.0.0.2\n  audit:\n    database: audit_db\n    shards:\n      - name: \"0\"\n        dsn: mysql://app@10.0.0.3\n";

    /// A repository directory with two keyspaces; `audit` holds only a `.gitkeep`.
    fn populate(root: &Path, users: &str) {
        write(root, "schemagate.yaml", CONFIG);
        write(root, "schemas/commerce/users.sql", users);
        write(
            root,
            "schemas/commerce/orders.sql",
            "CREATE TABLE orders (id INT);\n",
        );
        write(root, "schemas/commerce/.skeema", "schema=commerce\n");
        write(root, "schemas/commerce/notes.txt", "not sql\n");
        write(
            root,
            "schemas/commerce/old/legacy.sql",
            "CREATE TABLE legacy (id INT);\n",
        );
        write(root, "schemas/audit/.gitkeep", "");
    }

    fn commit_all(repo: &git2::Repository, message: &str) -> git2::Oid {
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Test", "test@example.com").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
    }

    fn paths(desired: &Desired, ks: &str) -> Vec<String> {
        desired.files[ks].iter().map(|f| f.path.clone()).collect()
    }

    #[tokio::test]
    async fn reads_the_working_tree() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path(), "\u{feff}CREATE TABLE users (id INT);\n");
        let desired = load(dir.path(), None).await.unwrap();
        assert_eq!(desired.revision, None);
        assert_eq!(
            paths(&desired, "commerce"),
            ["schemas/commerce/orders.sql", "schemas/commerce/users.sql"]
        );
        assert_eq!(
            desired.files["commerce"][1].text,
            "CREATE TABLE users (id INT);\n"
        );
        assert!(desired.files["audit"].is_empty());
        assert_eq!(desired.files.len(), 2);
        let audit = desired.config.keyspace("audit").unwrap();
        assert_eq!(audit.database, "audit_db");
        assert_eq!(
            desired.config.keyspace("commerce").unwrap().database,
            "commerce"
        );
    }

    #[test]
    fn reads_revisions_through_git() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        populate(dir.path(), "CREATE TABLE users (id INT);\n");
        let v1 = commit_all(&repo, "v1");
        write(
            dir.path(),
            "schemas/commerce/users.sql",
            "CREATE TABLE users (id BIGINT);\n",
        );
        write(
            dir.path(),
            "schemas/commerce/carts.sql",
            "CREATE TABLE carts (id INT);\n",
        );
        let v2 = commit_all(&repo, "v2");
        write(
            dir.path(),
            "schemas/commerce/users.sql",
            "CREATE TABLE users (id SMALLINT);\n",
        );

        let users = |d: &Desired| {
            d.files["commerce"]
                .iter()
                .find(|f| f.path == "schemas/commerce/users.sql")
                .unwrap()
                .text
                .clone()
        };

        let at_v1 = read_desired(dir.path(), Some(&v1.to_string()), &no_env).unwrap();
        assert_eq!(at_v1.revision.as_deref(), Some(v1.to_string().as_str()));
        assert_eq!(users(&at_v1), "CREATE TABLE users (id INT);\n");
        assert_eq!(
            paths(&at_v1, "commerce"),
            ["schemas/commerce/orders.sql", "schemas/commerce/users.sql"]
        );
        assert!(at_v1.files["audit"].is_empty());

        let head = read_desired(dir.path(), Some("HEAD"), &no_env).unwrap();
        assert_eq!(head.revision, Some(v2.to_string()));
        assert_eq!(users(&head), "CREATE TABLE users (id BIGINT);\n");
        assert_eq!(head.files["commerce"].len(), 3);
        assert_eq!(head.config, at_v1.config);

        let short = &v1.to_string()[..8];
        let by_short = read_desired(dir.path(), Some(short), &no_env).unwrap();
        assert_eq!(by_short.revision, Some(v1.to_string()));

        let work = read_desired(dir.path(), None, &no_env).unwrap();
        assert_eq!(work.revision, None);
        assert_eq!(users(&work), "CREATE TABLE users (id SMALLINT);\n");
    }

    #[tokio::test]
    async fn load_reads_a_revision_from_a_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        write(dir.path(), "README.md", "project\n");
        let sub: PathBuf = dir.path().join("examples/schemas");
        populate(&sub, "CREATE TABLE users (id INT);\n");
        let v1 = commit_all(&repo, "v1");
        write(
            &sub,
            "schemas/commerce/users.sql",
            "CREATE TABLE users (v INT);\n",
        );

        let desired = load(&sub, Some("HEAD")).await.unwrap();
        assert_eq!(desired.revision, Some(v1.to_string()));
        assert_eq!(
            paths(&desired, "commerce"),
            ["schemas/commerce/orders.sql", "schemas/commerce/users.sql"]
        );
        assert_eq!(
            desired.files["commerce"][1].text,
            "CREATE TABLE users (id INT);\n"
        );

        // The same directory reached through a relative-looking path with `..`.
        let odd = dir.path().join("examples/../examples/schemas");
        let again = load(&odd, Some("HEAD")).await.unwrap();
        assert_eq!(again, desired);

        // Reading the work tree root finds no schemagate.yaml there.
        let err = load(dir.path(), Some("HEAD")).await.unwrap_err();
        assert!(matches!(err, SourceError::MissingConfig { .. }), "{err}");
        assert!(err.to_string().contains("at revision `HEAD`"), "{err}");
    }

    #[test]
    fn git_errors() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        write(dir.path(), "README.md", "project\n");
        let v0 = commit_all(&repo, "v0");
        populate(dir.path(), "CREATE TABLE users (id INT);\n");
        let v1 = commit_all(&repo, "v1");

        let err = read_desired(dir.path(), Some(&v0.to_string()), &no_env).unwrap_err();
        assert!(matches!(err, SourceError::MissingConfig { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("at revision {}", &v0.to_string()[..12])),
            "{msg}"
        );

        let err = read_desired(dir.path(), Some("no-such-branch"), &no_env).unwrap_err();
        assert!(matches!(err, SourceError::UnknownRevision { .. }), "{err}");
        assert!(err.to_string().contains("`no-such-branch`"), "{err}");

        let tree_id = repo.find_commit(v1).unwrap().tree_id().to_string();
        let err = read_desired(dir.path(), Some(&tree_id), &no_env).unwrap_err();
        assert!(matches!(err, SourceError::NotACommit { .. }), "{err}");

        let plain = tempfile::tempdir().unwrap();
        let err = read_desired(plain.path(), Some("HEAD"), &no_env).unwrap_err();
        assert!(
            matches!(err, SourceError::NotAGitRepository { .. }),
            "{err}"
        );

        // Git keeps no empty directories: a keyspace directory with no files at all is
        // fine on disk but missing at the revision, hence the .gitkeep advice.
        let mut config = CONFIG.to_string();
        config.push_str("  extra:\n    shards: [{name: a, dsn: 'mysql://a@h'}]\n");
        write(dir.path(), "schemagate.yaml", &config);
        fs::create_dir_all(dir.path().join("schemas/extra")).unwrap();
        commit_all(&repo, "v2");
        assert!(read_desired(dir.path(), None, &no_env).unwrap().files["extra"].is_empty());
        let err = read_desired(dir.path(), Some("HEAD"), &no_env).unwrap_err();
        assert!(matches!(err, SourceError::MissingSchemaDir { .. }), "{err}");
        assert!(err.to_string().contains(".gitkeep"), "{err}");
        // Each revision is read with its own config.
        assert!(read_desired(dir.path(), Some(&v1.to_string()), &no_env).is_ok());
    }

    #[test]
    fn schema_directories_must_match_keyspaces() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path(), "CREATE TABLE users (id INT);\n");
        write(
            dir.path(),
            "schemas/comerce/users.sql",
            "CREATE TABLE users (id INT);\n",
        );
        let err = read_desired(dir.path(), None, &no_env).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SourceError::UnknownSchemaDir { .. }), "{msg}");
        assert!(msg.contains("schemas/comerce/"), "{msg}");
        assert!(msg.contains("audit, commerce"), "{msg}");

        fs::remove_dir_all(dir.path().join("schemas/comerce")).unwrap();
        fs::remove_dir_all(dir.path().join("schemas/audit")).unwrap();
        let err = read_desired(dir.path(), None, &no_env).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SourceError::MissingSchemaDir { .. }), "{msg}");
        assert!(msg.contains("keyspace `audit`"), "{msg}");
        assert!(msg.contains("create schemas/audit/"), "{msg}");

        // Files directly in schemas/ and dot-directories are not keyspaces.
        write(dir.path(), "schemas/audit/.gitkeep", "");
        write(dir.path(), "schemas/README.md", "docs\n");
        write(dir.path(), "schemas/.cache/x", "");
        assert!(read_desired(dir.path(), None, &no_env).is_ok());
    }

    #[test]
    fn missing_and_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_desired(dir.path(), None, &no_env).unwrap_err();
        assert!(matches!(err, SourceError::MissingConfig { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("schemagate.yaml does not exist in "),
            "{err}"
        );

        let err = read_desired(&dir.path().join("nope"), None, &no_env).unwrap_err();
        assert!(matches!(err, SourceError::RepoDir { .. }), "{err}");

        populate(dir.path(), "CREATE TABLE users (id INT);\n");
        fs::write(dir.path().join("schemas/commerce/bad.sql"), b"\xff\xfe").unwrap();
        let err = read_desired(dir.path(), None, &no_env).unwrap_err();
        assert!(matches!(err, SourceError::NotUtf8 { .. }), "{err}");
        assert!(
            err.to_string().contains("schemas/commerce/bad.sql"),
            "{err}"
        );
    }

    #[test]
    fn errors_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<SourceError>();
        assert_send_sync::<Desired>();
    }

    #[test]
    fn errors_while_loading_never_show_the_password() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path(), "CREATE TABLE users (id INT);\n");
        let env = |name: &str| (name == "PW").then(|| SECRET.to_string());
        let configs = [
            format!("keyspaces:\n  commerce:\n    shards:\n      - name: a\n        dsn: mysql://app:{SECRET}@h/db\n"),
            "keyspaces:\n  commerce:\n    shards:\n      - name: a\n        dsn: mysql://app:${PW}@h?x=1\n".to_string(),
            "keyspaces:\n  commerce:\n    shards:\n      - name: a\n        dsn: mysql://app:${PW}@h:0\n".to_string(),
            format!("keyspaces:\n  commerce:\n    shards: \"mysql://app:{SECRET}@h\"\n"),
            format!("keyspaces:\n  commerce:\n    shards:\n      - name: a\n        dsn: mysql://app:{SECRET}@h\n        dsn: mysql://app:{SECRET}@h\n"),
        ];
        for config in configs {
            write(dir.path(), "schemagate.yaml", &config);
            let err = read_desired(dir.path(), None, &env).unwrap_err();
            assert!(!err.to_string().contains(SECRET), "{err}");
            assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
        }
        write(
            dir.path(),
            "schemagate.yaml",
            "keyspaces:\n  commerce:\n    shards:\n      - name: a\n        dsn: mysql://app:${PW}@h\n  audit:\n    shards: [{name: a, dsn: 'mysql://a@h'}]\n",
        );
        let desired = read_desired(dir.path(), None, &env).unwrap();
        assert_eq!(
            desired.config.keyspaces[1].shards[0].dsn.password(),
            Some(SECRET)
        );
        assert!(!format!("{desired:?}").contains(SECRET));
    }
}
