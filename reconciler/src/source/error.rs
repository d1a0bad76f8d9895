//! Every way reading the desired state can fail. Each message names the file (with line and
//! column where known), the keyspace and shard involved, and what to do about it.

use std::path::PathBuf;

use super::dsn::DsnError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error(
        "cannot use {} as the repository directory: {source}; pass --repo with the directory \
         that holds schemagate.yaml.",
        dir.display()
    )]
    RepoDir {
        dir: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{path} does not exist {place}; create it, or point --repo at the directory that \
         holds it."
    )]
    MissingConfig { path: String, place: String },

    #[error("cannot read {path} {place}: {source}; check that it is a readable file.")]
    Read {
        path: String,
        place: String,
        source: std::io::Error,
    },

    #[error("{path} {place} is not valid UTF-8; save it with UTF-8 encoding.")]
    NotUtf8 { path: String, place: String },

    #[error("{path} {place} contains a name that is not valid UTF-8; rename it.")]
    BadFileName { path: String, place: String },

    #[error(
        "{path} {place} is a {kind}, which schemagate cannot read; replace it with a \
         regular {expected}."
    )]
    UnsupportedEntry {
        path: String,
        place: String,
        kind: &'static str,
        expected: &'static str,
    },

    /// Invalid YAML, unknown or missing keys, and invalid names, at a known position.
    #[error("{path}:{line}:{column}: {message}")]
    Yaml {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// A problem with the configuration as a whole, where no position applies.
    #[error("{path}: {message}")]
    Config { path: String, message: String },

    #[error(
        "{path}: keyspace `{keyspace}` uses database `{database}`, but names starting with \
         `_schemagate` are reserved for schemagate's own databases; set `database:` for the \
         keyspace to another name."
    )]
    ReservedDatabase {
        path: String,
        keyspace: String,
        database: String,
    },

    #[error(
        "{path}: keyspace `{keyspace}`, shard `{shard}`: the dsn uses ${{{variable}}}, but the \
         environment variable {variable} is not set; export it before running schemagate \
         (write $$ for a literal `$`)."
    )]
    UnsetVariable {
        path: String,
        keyspace: String,
        shard: String,
        variable: String,
    },

    #[error("{path}: keyspace `{keyspace}`, shard `{shard}`: the dsn {problem}.")]
    DsnTemplate {
        path: String,
        keyspace: String,
        shard: String,
        problem: String,
    },

    #[error("{path}: keyspace `{keyspace}`, shard `{shard}`: the dsn is invalid: {source}.")]
    Dsn {
        path: String,
        keyspace: String,
        shard: String,
        source: DsnError,
    },

    #[error(
        "{dir}/ {place} does not match any keyspace in schemagate.yaml (keyspaces: \
         {keyspaces}); rename the directory, or add the keyspace to schemagate.yaml."
    )]
    UnknownSchemaDir {
        dir: String,
        place: String,
        keyspaces: String,
    },

    #[error(
        "keyspace `{keyspace}` in schemagate.yaml has no directory {dir}/ {place}; create \
         {dir}/ (it may hold no .sql files, only a .gitkeep), or remove the keyspace."
    )]
    MissingSchemaDir {
        keyspace: String,
        dir: String,
        place: String,
    },

    #[error(
        "--rev needs a Git repository, but none could be opened at {} ({source}); point \
         --repo into a Git work tree, or leave out --rev to read the files on disk.",
        dir.display()
    )]
    NotAGitRepository { dir: PathBuf, source: git2::Error },

    #[error(
        "the Git repository found for {} is bare, so the directory cannot be located in a \
         commit; point --repo into a clone that has a work tree.",
        dir.display()
    )]
    BareRepository { dir: PathBuf },

    #[error(
        "{} is not inside the work tree {} of its Git repository; point --repo at a \
         directory of the work tree.",
        dir.display(),
        workdir.display()
    )]
    OutsideWorkTree { dir: PathBuf, workdir: PathBuf },

    #[error(
        "revision `{rev}` is not known to the Git repository at {}; check its spelling, or \
         fetch it first.",
        workdir.display()
    )]
    UnknownRevision {
        rev: String,
        workdir: PathBuf,
        source: git2::Error,
    },

    #[error("revision `{rev}` does not name a commit; pass a commit id, branch or tag.")]
    NotACommit { rev: String, source: git2::Error },

    #[error("Git failed while {action}: {source}; check the repository's health with `git fsck`.")]
    Git { action: String, source: git2::Error },

    #[error(
        "reading the desired schema stopped unexpectedly ({0}); this is a bug in schemagate, \
         please report it."
    )]
    Task(#[from] tokio::task::JoinError),
}
