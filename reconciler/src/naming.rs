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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_are_recognised() {
        assert!(is_artifact_table("_sg0123456789ab_new_users"));
        assert!(!is_artifact_table("_sg0123456789AB_new_users"));
        assert!(!is_artifact_table("_sgusers"));
        assert!(!is_artifact_table("users"));
        assert!(!is_artifact_table("_sg0123456789ab"));
    }
}
