//! Builds the test plugins (`tests/plugins/*`) and the example plugins
//! (`examples/plugins/*`) into components for the integration tests.

#[path = "../host/src/toolchain.rs"]
#[allow(dead_code)]
mod toolchain;

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in [
        "tests/plugins",
        "examples/plugins",
        "sdk",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let mut names: Vec<String> = Vec::new();
    for dir in ["tests/plugins", "examples/plugins"] {
        names.extend(
            toolchain::crates_in(&root.join(dir))
                .into_iter()
                .map(|(n, _)| n),
        );
    }
    let tc = toolchain::Toolchain::detect().unwrap_or_else(|e| fail(&e));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm");
    let req = toolchain::BuildRequest {
        manifest: &root.join("Cargo.toml"),
        packages: &names,
        target_dir: &target_dir,
        profile: "plugin",
        locked: true,
        quiet: true,
    };
    let built = tc.build(&req).unwrap_or_else(|e| fail(&e));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for (name, path) in built {
        std::fs::copy(&path, out.join(format!("{name}.wasm"))).unwrap();
    }
    println!("cargo:rustc-env=WARDGATE_TEST_PLUGINS={}", out.display());
}

fn fail(message: &str) -> ! {
    eprintln!("error: cannot build the test plugins: {message}");
    std::process::exit(1);
}
