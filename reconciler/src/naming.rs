//! Names the tool creates on servers. Everything starts with `_sg` or lives in a database of
//! its own, so introspection can ignore it and it can never clash with an application table.

/// Database holding the tool's own metadata on every server (deployments, later issues).
pub const METADATA_DATABASE: &str = "_schemagate";

/// Prefix of the short-lived scratch databases used to canonicalise and verify DDL.
pub const WORKSPACE_PREFIX: &str = "_schemagate_ws_";

/// True for tables the tool creates inside a user's database (shadow, staging and retention
/// tables): `_sg` followed by a 12-hex-digit deployment id and an underscore.
pub fn is_artifact_table(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("_sg") else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() > 13
        && bytes[..12]
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && bytes[12] == b'_'
}

/// Length of a deployment id: 12 hex digits of a SHA-256.
pub const ID_LEN: usize = 12;

/// MySQL's limit for table and trigger names.
const MAX_NAME: usize = 64;

/// A stable deployment id: the same keyspace, target revision and plan always give the same id.
pub fn deployment_id(keyspace: &str, revision: Option<&str>, plan: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [keyspace, revision.unwrap_or("working-tree"), plan] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex(&hash.finalize())[..ID_LEN].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Name of a table the tool creates for `table` in deployment `id`: `_sg<id>_<role>_<table>`,
/// shortened with a hash of the table name when it would exceed 64 characters.
pub fn artifact(id: &str, role: &str, table: &str) -> String {
    fit(format!("_sg{id}_{role}_"), table, 0)
}

/// Prefix of the capture triggers of `table` (the caller appends `_ins`, `_upd`, `_del`).
pub fn trigger_prefix(id: &str, table: &str) -> String {
    fit(format!("_sg{id}_tr_"), table, 4)
}

fn fit(prefix: String, table: &str, reserve: usize) -> String {
    let room = MAX_NAME - reserve - prefix.len();
    if table.chars().count() <= room {
        return format!("{prefix}{table}");
    }
    use sha2::{Digest, Sha256};
    let tag = &hex(&Sha256::digest(table.as_bytes()))[..8];
    let kept: String = table.chars().take(room - tag.len() - 1).collect();
    format!("{prefix}{kept}_{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_are_stable_and_distinct() {
        let a = deployment_id("commerce", Some("abc"), "plan");
        assert_eq!(a, deployment_id("commerce", Some("abc"), "plan"));
        assert_eq!(a.len(), ID_LEN);
        assert_ne!(a, deployment_id("commerce", Some("abd"), "plan"));
        assert_ne!(a, deployment_id("commerce", None, "plan"));
    }

    #[test]
    fn artifact_names_fit_and_are_recognised() {
        let id = deployment_id("k", None, "p");
        let short = artifact(&id, "new", "users");
        assert_eq!(short, format!("_sg{id}_new_users"));
        assert!(is_artifact_table(&short));
        let long = "a".repeat(64);
        let name = artifact(&id, "old", &long);
        assert_eq!(name.chars().count(), 64);
        assert!(is_artifact_table(&name));
        assert_ne!(name, artifact(&id, "old", &format!("{}b", "a".repeat(63))));
        assert!(trigger_prefix(&id, &long).chars().count() <= 60);
    }

    #[test]
    fn artifact_names_are_recognised() {
        assert!(is_artifact_table("_sg0123456789ab_new_users"));
        assert!(!is_artifact_table("_sg0123456789AB_new_users"));
        assert!(!is_artifact_table("_sgusers"));
        assert!(!is_artifact_table("users"));
        assert!(!is_artifact_table("_sg0123456789ab"));
    }
}
