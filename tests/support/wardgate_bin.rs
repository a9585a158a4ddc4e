//! Which gateway binary the tests and benches start.

use std::path::{Path, PathBuf};

/// This package's build, or the one `WARDGATE=path` names (e.g.
/// scripts/build-pgo's: the whole suite, or a bench, run against it). A
/// relative path is taken from the workspace root, where the command was
/// typed (cargo runs tests and benches in the package's directory).
pub fn wardgate_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("WARDGATE")
        .map(|path| root.join(path))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wardgate")))
}
