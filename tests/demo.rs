//! The README's first command: `schemagate demo` runs the whole job on its embedded default.

mod support;

use support::{code, schemagate, stderr, stdout};

#[test]
fn demo_plans_stages_and_seals_the_example_on_sandbox_shards() {
    let out = schemagate(&["demo"]);
    let shown = stdout(&out);
    assert_eq!(code(&out), 0, "{shown}{}", stderr(&out));
    assert!(
        shown.contains("differs from the others"),
        "the drifted shard is called out: {shown}"
    );
    assert!(
        shown.contains("gate open") || stderr(&out).contains("gate open"),
        "{shown}"
    );
    assert!(shown.contains("state sealed"), "{shown}");
    assert_eq!(
        shown.matches("sealed at ").count(),
        4,
        "every shard's cut-over is shown: {shown}"
    );
    assert!(shown.contains("seal skew"), "{shown}");
}
