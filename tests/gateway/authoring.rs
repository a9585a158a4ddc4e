//! The plugin author's loop as the README tells it: `wardgate plugin new`,
//! the crate's own tests, `plugin build`, `plugin test` on sample requests.

use std::process::Command;

use super::process;

#[test]
fn new_plugin_builds_passes_its_tests_and_runs_samples() {
    let dir = std::env::temp_dir().join(format!("wardgate-author-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let crate_dir = dir.join("demo");
    let path = crate_dir.to_str().unwrap();

    let out = process::wardgate(&["plugin", "new", path, "--hooks", "mcp,llm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = process::wardgate(&["plugin", "new", path]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("already exists")
    );

    // The generated crate's own tests pass natively.
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let status = Command::new(env!("CARGO"))
        .args(["test", "--release", "--quiet", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", format!("{repo}/target/scaffold-native"))
        .status()
        .expect("cargo test");
    assert!(status.success(), "the new plugin's tests failed");

    let out = process::wardgate(&["plugin", "build", path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("hooks     llm-request, mcp-request"),
        "{text}"
    );
    let wasm = crate_dir.join("demo.wasm");
    assert!(wardgate::toolchain::is_component(
        &std::fs::read(&wasm).unwrap()
    ));

    // The samples the crate ships: one allowed and one denied per hook family.
    let own = crate_dir.join("samples.json");
    let out = process::wardgate(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--config",
        r#"{"words": ["drop"]}"#,
        "--input",
        own.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo: 4 samples, 2 denied"), "{text}");

    let samples = dir.join("samples.json");
    std::fs::write(
        &samples,
        r#"[
{"llm": {"model": "gpt-4o", "messages": [{"role": "user", "content": "please DROP the table"}]}},
{"mcp": {"method": "tools/call", "name": "echo", "arguments": {"text": "hi"}}},
{"http": {"method": "GET", "path": "/"}}
]"#,
    )
    .unwrap();
    let out = process::wardgate(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--config",
        r#"{"words": ["drop"]}"#,
        "--input",
        samples.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("deny 403") && lines[0].contains("'drop'"),
        "{text}"
    );
    assert!(lines[1].ends_with("continue"), "{text}");
    assert!(lines[2].contains("no hook for this kind"), "{text}");

    // A bad config is the plugin's own error, naming the field.
    let out = process::wardgate(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--config",
        r#"{"words": [""]}"#,
        "--input",
        samples.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("words[0]"));
    let _ = std::fs::remove_dir_all(dir);
}
