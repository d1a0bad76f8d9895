//! The two places the desired state is read from, behind one small interface: the files on
//! disk, and the tree of a Git commit (read through git2, without a checkout).
//!
//! Paths given to a [`Tree`] are relative to the repository directory and use `/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::error::SourceError;

pub(crate) enum EntryKind {
    File,
    Dir,
    /// Something that is neither: a symlink in Git, a submodule, a socket, a broken link.
    Other(&'static str),
}

pub(crate) struct Entry {
    pub name: String,
    pub kind: EntryKind,
}

pub(crate) trait Tree {
    /// Where the files come from, for messages: "in /repo" or "at revision `HEAD` (...)".
    fn place(&self) -> &str;

    /// The contents of a file; `None` when nothing is at `path`.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError>;

    /// The entries of a directory, unsorted; `None` when no directory is at `path`.
    fn list(&self, path: &str) -> Result<Option<Vec<Entry>>, SourceError>;
}

/// The files on disk under the repository directory.
pub(crate) struct WorkTree {
    root: PathBuf,
    place: String,
}

impl WorkTree {
    pub fn open(root: &Path) -> Result<WorkTree, SourceError> {
        let meta = fs::metadata(root).map_err(|source| SourceError::RepoDir {
            dir: root.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(SourceError::RepoDir {
                dir: root.to_path_buf(),
                source: io::Error::other("it is not a directory"),
            });
        }
        Ok(WorkTree {
            root: root.to_path_buf(),
            place: format!("in {}", root.display()),
        })
    }
}

impl Tree for WorkTree {
    fn place(&self) -> &str {
        &self.place
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        match fs::read(self.root.join(path)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SourceError::Read {
                path: path.to_string(),
                place: self.place.clone(),
                source,
            }),
        }
    }

    fn list(&self, path: &str) -> Result<Option<Vec<Entry>>, SourceError> {
        let dir = self.root.join(path);
        let read_err = |source| SourceError::Read {
            path: path.to_string(),
            place: self.place.clone(),
            source,
        };
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(&dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let Ok(name) = entry.file_name().into_string() else {
                return Err(SourceError::BadFileName {
                    path: path.to_string(),
                    place: self.place.clone(),
                });
            };
            // Follow symlinks: on disk a linked file or directory is as good as a real one.
            let kind = match fs::metadata(entry.path()) {
                Ok(m) if m.is_dir() => EntryKind::Dir,
                Ok(m) if m.is_file() => EntryKind::File,
                Ok(_) => EntryKind::Other("special file"),
                Err(_) => EntryKind::Other("broken symbolic link"),
            };
            entries.push(Entry { name, kind });
        }
        Ok(Some(entries))
    }
}

/// The tree of one commit, seen from the repository directory's place in the work tree.
pub(crate) struct GitTree {
    repo: git2::Repository,
    tree: git2::Oid,
    /// The repository directory relative to the work tree, `""` or ending in `/`.
    prefix: String,
    place: String,
    commit: String,
}

/// Git tree entry mode of a symbolic link.
const SYMLINK_MODE: i32 = 0o120000;

impl GitTree {
    /// Opens the Git repository containing `dir` and resolves `rev` to a commit.
    pub fn open(dir: &Path, rev: &str) -> Result<GitTree, SourceError> {
        let canonical = dir.canonicalize().map_err(|source| SourceError::RepoDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let repo = git2::Repository::discover(&canonical).map_err(|source| {
            SourceError::NotAGitRepository {
                dir: dir.to_path_buf(),
                source,
            }
        })?;
        let Some(workdir) = repo.workdir() else {
            return Err(SourceError::BareRepository {
                dir: dir.to_path_buf(),
            });
        };
        let workdir = workdir.to_path_buf();
        let outside = || SourceError::OutsideWorkTree {
            dir: dir.to_path_buf(),
            workdir: workdir.clone(),
        };
        let canonical_workdir = workdir.canonicalize().map_err(|_| outside())?;
        let relative = canonical
            .strip_prefix(&canonical_workdir)
            .map_err(|_| outside())?;
        let mut prefix = String::new();
        for part in relative.components() {
            let std::path::Component::Normal(part) = part else {
                return Err(outside());
            };
            let Some(part) = part.to_str() else {
                return Err(SourceError::BadFileName {
                    path: relative.display().to_string(),
                    place: "in the work tree".to_string(),
                });
            };
            prefix.push_str(part);
            prefix.push('/');
        }

        let object = repo
            .revparse_single(rev)
            .map_err(|source| SourceError::UnknownRevision {
                rev: rev.to_string(),
                workdir: workdir.clone(),
                source,
            })?;
        let commit = object
            .peel_to_commit()
            .map_err(|source| SourceError::NotACommit {
                rev: rev.to_string(),
                source,
            })?;
        let id = commit.id().to_string();
        let tree = commit.tree_id();
        // Both borrow `repo`, which moves into the result.
        drop(commit);
        drop(object);
        let place = if id.starts_with(rev) {
            format!("at revision {}", short(&id))
        } else {
            format!("at revision `{rev}` ({})", short(&id))
        };
        Ok(GitTree {
            repo,
            tree,
            prefix,
            place,
            commit: id,
        })
    }

    /// The resolved commit id, full hex.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    fn git_err(&self, action: String) -> impl FnOnce(git2::Error) -> SourceError {
        move |source| SourceError::Git { action, source }
    }

    /// The entry at `path`, `None` when there is none.
    fn entry(&self, path: &str) -> Result<Option<git2::TreeEntry<'static>>, SourceError> {
        let root = self
            .repo
            .find_tree(self.tree)
            .map_err(self.git_err(format!("reading the tree of commit {}", self.commit)))?;
        let full = format!("{}{path}", self.prefix);
        match root.get_path(Path::new(&full)) {
            Ok(entry) => Ok(Some(entry.to_owned())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self
                .git_err(format!("looking up {full} in commit {}", self.commit))(
                e
            )),
        }
    }

    fn unsupported(&self, path: &str, kind: &'static str, expected: &'static str) -> SourceError {
        SourceError::UnsupportedEntry {
            path: path.to_string(),
            place: self.place.clone(),
            kind,
            expected,
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn entry_kind(entry: &git2::TreeEntry<'_>) -> EntryKind {
    match entry.kind() {
        Some(git2::ObjectType::Tree) => EntryKind::Dir,
        Some(git2::ObjectType::Blob) if entry.filemode() == SYMLINK_MODE => {
            EntryKind::Other("symbolic link in Git")
        }
        Some(git2::ObjectType::Blob) => EntryKind::File,
        Some(git2::ObjectType::Commit) => EntryKind::Other("Git submodule"),
        _ => EntryKind::Other("Git object of an unexpected kind"),
    }
}

impl Tree for GitTree {
    fn place(&self) -> &str {
        &self.place
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let Some(entry) = self.entry(path)? else {
            return Ok(None);
        };
        match entry_kind(&entry) {
            EntryKind::File => {}
            EntryKind::Dir => return Err(self.unsupported(path, "directory", "file")),
            EntryKind::Other(kind) => return Err(self.unsupported(path, kind, "file")),
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(self.git_err(format!("reading {path} {}", self.place)))?;
        Ok(Some(blob.content().to_vec()))
    }

    fn list(&self, path: &str) -> Result<Option<Vec<Entry>>, SourceError> {
        let Some(entry) = self.entry(path)? else {
            return Ok(None);
        };
        if !matches!(entry_kind(&entry), EntryKind::Dir) {
            return Ok(None);
        }
        let tree = self
            .repo
            .find_tree(entry.id())
            .map_err(self.git_err(format!("reading directory {path} {}", self.place)))?;
        let mut entries = Vec::with_capacity(tree.len());
        for entry in tree.iter() {
            let Ok(name) = entry.name() else {
                return Err(SourceError::BadFileName {
                    path: path.to_string(),
                    place: self.place.clone(),
                });
            };
            entries.push(Entry {
                name: name.to_string(),
                kind: entry_kind(&entry),
            });
        }
        Ok(Some(entries))
    }
}
