//! `scripts/run` (`cargo build -p wardgate`) and `scripts/test` (`cargo test
//! --workspace`) must share one release build. Cargo resolves features per
//! command: the workspace's plugins, SDK and test crates turn on features of
//! crates the gateway depends on too, and any such difference gives those
//! crates (wasmtime among them) a second build. host/Cargo.toml asks for the
//! same features itself; this test says which crate drifted when they part.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Each crate the selection builds ("name version"), with the feature sets it
/// is built with (one for normal code, maybe another for build scripts and
/// proc-macros).
fn resolved(selection: &[&str], edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["tree", "--locked", "--offline", "--prefix", "none"])
        .args(["-f", "{p}|{f}", "-e", edges])
        .args(selection)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {selection:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut crates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        // "name vX.Y.Z (path) (proc-macro)" → "name vX.Y.Z"
        let mut words = package.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let features = features.trim_end_matches(" (*)").trim().to_string();
        crates
            .entry(format!("{name} {version}"))
            .or_default()
            .insert(features);
    }
    crates
}

#[test]
fn the_gateway_alone_resolves_its_dependencies_as_the_test_build_does() {
    let alone = resolved(&["-p", "wardgate"], "normal,build");
    let workspace = resolved(&["--workspace"], "normal,build,dev");
    assert!(alone.len() > 100, "cargo tree listed only {alone:?}");
    let drifted: Vec<String> = alone
        .iter()
        .filter(|(krate, features)| workspace.get(*krate) != Some(*features))
        .map(|(krate, features)| {
            let tested = workspace
                .get(krate)
                .map_or_else(|| "not at all".to_string(), |f| format!("{f:?}"));
            format!(
                "{krate}: `cargo build -p wardgate` builds it with {features:?}, \
                 `cargo test --workspace` with {tested}"
            )
        })
        .collect();
    assert!(
        drifted.is_empty(),
        "these crates would be built twice; ask for the test build's features in \
         host/Cargo.toml:\n{}",
        drifted.join("\n")
    );
}
