//! The Python example plugin (examples/plugins-python/path-guard), built with
//! componentize-py from PyPI (scripts/setup-test-peers installs it) into
//! target/python-plugins, keyed by the source's hash so edits rebuild it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn path_guard() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = root.join("examples/plugins-python/path-guard");
    let app = std::fs::read(src.join("app.py")).expect("app.py");
    let wit = std::fs::read(root.join("wit/policy.wit")).expect("policy.wit");
    let hash = wardgate::distribution::store::sha256_digest(&[app, wit].concat());
    let out_dir = root.join("target/python-plugins");
    let out = out_dir.join(format!("path-guard-{}.wasm", &hash[7..19]));
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(&out_dir).unwrap();
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    // scripts/setup-test-peers installs it into target/py; else use PATH.
    let venv = root.join("target/py/bin/componentize-py");
    let tool = if venv.exists() {
        venv
    } else {
        PathBuf::from("componentize-py")
    };
    let status = Command::new(tool)
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "plugin", "componentize", "app", "-o"])
        .arg(&tmp)
        .current_dir(&src)
        .status()
        .expect("componentize-py is missing: pip install componentize-py (scripts/setup-test-peers does)");
    assert!(status.success(), "componentize-py failed");
    std::fs::rename(&tmp, &out).unwrap();
    out
}
