//! Builds every crate in `plugins/` into a component and embeds them, so the
//! gateway binary carries its built-in policies and needs no extra files.

#[path = "src/toolchain.rs"]
#[allow(dead_code)]
mod toolchain;

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in [
        "plugins",
        "sdk",
        "wit",
        "Cargo.lock",
        "host/src/toolchain.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=WARDGATE_WASM_TOOLCHAIN");

    let crates = toolchain::crates_in(&root.join("plugins"));
    let names: Vec<String> = crates.iter().map(|(n, _)| n.clone()).collect();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let built = if names.is_empty() {
        Vec::new()
    } else {
        build(&root, &names)
    };

    let mut table = String::from("pub static BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n");
    for (name, path) in built {
        let dest = out.join(format!("{name}.wasm"));
        std::fs::copy(&path, &dest).unwrap();
        table += &format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            dest.display().to_string()
        );
    }
    table += "];\n";
    std::fs::write(out.join("builtin_plugins.rs"), table).unwrap();
}

fn build(root: &Path, names: &[String]) -> Vec<(String, PathBuf)> {
    let tc = toolchain::Toolchain::detect().unwrap_or_else(|e| fail(&e));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm");
    let req = toolchain::BuildRequest {
        manifest: &root.join("Cargo.toml"),
        packages: names,
        target_dir: &target_dir,
        profile: "plugin",
        locked: true,
        quiet: true,
    };
    tc.build(&req).unwrap_or_else(|e| fail(&e))
}

fn fail(message: &str) -> ! {
    eprintln!("error: cannot build the built-in plugins: {message}");
    std::process::exit(1);
}
