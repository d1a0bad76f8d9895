//! The schemagate engine. Data flows one way through the modules, in this order:
//!
//! - [`source`]: the desired state from a Git repository (working tree or a revision).
//! - [`schema`]: CREATE TABLE text parsed (sqlparser) into the schema model.
//! - [`live`]: the live schema of every shard, introspected concurrently.
//! - [`workspace`]: scratch databases that give canonical forms and verify DDL.
//! - [`diff`]: two canonical tables in, the DDL that turns one into the other out.
//! - [`plan`]: all of the above per keyspace and shard, verified before it is shown.
//!
//! [`sandbox`] starts local `mariadbd` servers for `schemagate demo` and the tests;
//! [`naming`] owns every name the tool itself creates on a server.

pub mod deploy;
pub mod diff;
pub mod live;
pub mod naming;
pub mod plan;
pub mod sandbox;
pub mod schema;
pub mod source;
pub mod workspace;

/// Fault injection for the crash tests: when `SCHEMAGATE_FAILPOINT` names this point, the
/// process dies on the spot, as under SIGKILL (no destructors, no cleanup, connections cut).
pub fn failpoint(name: &str) {
    if std::env::var("SCHEMAGATE_FAILPOINT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
}
