//! Building plugin crates into WebAssembly components.
//!
//! Two toolchains are detected, in this order:
//! 1. rustup's `wasm32-wasip2` target: `cargo build --target wasm32-wasip2`
//!    already emits a component.
//! 2. Debian's `rustc-web` packages (rustc with the std sources, `wasm-ld`):
//!    build `wasm32-unknown-unknown` with `-Zbuild-std`, then turn the core
//!    module into a component with `wit-component`.
//!
//! `WARDGATE_WASM_TOOLCHAIN=wasip2|debian` forces one. This file has no crate
//! dependencies besides `wit-component`, because `host/build.rs` includes it
//! too (to embed the built-in plugins).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A toolchain able to build plugin crates.
#[derive(Debug, Clone)]
pub enum Toolchain {
    /// rustup with the `wasm32-wasip2` target installed.
    Wasip2 { cargo: PathBuf },
    /// Debian's rustc-web: nightly features unlocked with RUSTC_BOOTSTRAP.
    DebianWeb {
        cargo: PathBuf,
        rustc: PathBuf,
        linker: PathBuf,
    },
}

const SETUP_HINT: &str = "install one with `scripts/setup-wasm-toolchain` (Debian's rustc-web, cargo-web, \
     rust-web-src, lld-19) or `rustup target add wasm32-wasip2`";

impl Toolchain {
    /// Find a usable toolchain, or say how to get one.
    pub fn detect() -> Result<Toolchain, String> {
        let forced = std::env::var("WARDGATE_WASM_TOOLCHAIN").ok();
        match forced.as_deref() {
            Some("wasip2") => {
                return Self::wasip2().ok_or_else(|| {
                    "WARDGATE_WASM_TOOLCHAIN=wasip2 but rustup's wasm32-wasip2 target is not installed".into()
                });
            }
            Some("debian") => {
                return Self::debian().ok_or_else(|| {
                    format!("WARDGATE_WASM_TOOLCHAIN=debian but Debian's rustc-web is incomplete: {SETUP_HINT}")
                });
            }
            Some(other) if !other.is_empty() => {
                return Err(format!(
                    "WARDGATE_WASM_TOOLCHAIN={other} is not a toolchain (use wasip2 or debian)"
                ));
            }
            _ => {}
        }
        Self::wasip2()
            .or_else(Self::debian)
            .ok_or_else(|| format!("no WebAssembly toolchain found: {SETUP_HINT}"))
    }

    fn wasip2() -> Option<Toolchain> {
        let out = Command::new("rustc")
            .env_remove("RUSTC")
            .args(["--print", "sysroot"])
            .output()
            .ok()?;
        let sysroot = String::from_utf8(out.stdout).ok()?;
        let lib = Path::new(sysroot.trim()).join("lib/rustlib/wasm32-wasip2/lib");
        lib.is_dir().then(|| Toolchain::Wasip2 {
            cargo: PathBuf::from("cargo"),
        })
    }

    fn debian() -> Option<Toolchain> {
        let cargo = PathBuf::from("/usr/bin/cargo");
        let rustc = PathBuf::from("/usr/bin/rustc");
        let std_src = Path::new("/usr/lib/rustlib/src/rust/library/std");
        if !(cargo.exists() && rustc.exists() && std_src.is_dir()) {
            return None;
        }
        let linker = [
            "/usr/bin/wasm-ld-19",
            "/usr/lib/llvm-19/bin/wasm-ld",
            "/usr/bin/wasm-ld",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
        Some(Toolchain::DebianWeb {
            cargo,
            rustc,
            linker,
        })
    }

    /// The rustc target triple this toolchain builds for.
    pub fn target(&self) -> &'static str {
        match self {
            Toolchain::Wasip2 { .. } => "wasm32-wasip2",
            Toolchain::DebianWeb { .. } => "wasm32-unknown-unknown",
        }
    }

    /// A short description for logs and `wardgate plugin build`.
    pub fn describe(&self) -> String {
        match self {
            Toolchain::Wasip2 { .. } => "rustup wasm32-wasip2".into(),
            Toolchain::DebianWeb { linker, .. } => format!(
                "Debian rustc-web, wasm32-unknown-unknown + build-std, linker {}",
                linker.display()
            ),
        }
    }

    /// Build `packages` of the workspace (or crate) at `manifest` into
    /// components; returns `(package, component path)` in the same order.
    pub fn build(&self, req: &BuildRequest<'_>) -> Result<Vec<(String, PathBuf)>, String> {
        let cargo = match self {
            Toolchain::Wasip2 { cargo } | Toolchain::DebianWeb { cargo, .. } => cargo,
        };
        let mut cmd = Command::new(cargo);
        // Start from a clean environment: when this runs inside a build script,
        // the outer cargo's variables (RUSTC, RUSTFLAGS, jobserver, ...) would
        // otherwise leak into the inner build and break it.
        cmd.env_clear();
        for var in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "TMPDIR",
        ] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(req.manifest)
            .arg("--target")
            .arg(self.target())
            .arg("--target-dir")
            .arg(req.target_dir)
            .arg("--profile")
            .arg(req.profile);
        if req.locked {
            cmd.arg("--locked");
        }
        if req.quiet {
            cmd.arg("--quiet");
        }
        for p in req.packages {
            cmd.arg("-p").arg(p);
        }
        // SIMD lets memchr and the regex prefilters scan 16 bytes at a time;
        // wasmtime supports it everywhere it runs.
        cmd.env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "-Ctarget-feature=+simd128",
        )
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
            "-Ctarget-feature=+simd128",
        );
        if let Toolchain::DebianWeb { rustc, linker, .. } = self {
            cmd.env("RUSTC", rustc)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker)
                .arg("-Zbuild-std=std,panic_abort");
        }
        let status = cmd
            .status()
            .map_err(|e| format!("could not run {}: {e}", cargo.display()))?;
        if !status.success() {
            return Err(format!(
                "building plugins {:?} with {} failed ({status})",
                req.packages,
                self.describe()
            ));
        }
        let out_dir = req.target_dir.join(self.target()).join(req.profile);
        req.packages
            .iter()
            .map(|p| {
                let file = out_dir.join(format!("{}.wasm", p.replace('-', "_")));
                let bytes = std::fs::read(&file)
                    .map_err(|e| format!("expected build output {}: {e}", file.display()))?;
                if !is_component(&bytes) {
                    let component = componentize(&bytes)
                        .map_err(|e| format!("making a component of {}: {e}", file.display()))?;
                    std::fs::write(&file, component)
                        .map_err(|e| format!("writing {}: {e}", file.display()))?;
                }
                Ok((p.clone(), file))
            })
            .collect()
    }
}

/// What to build.
pub struct BuildRequest<'a> {
    /// `Cargo.toml` of the workspace or plugin crate.
    pub manifest: &'a Path,
    pub packages: &'a [String],
    pub target_dir: &'a Path,
    pub profile: &'a str,
    /// Pass `--locked` (the gateway's own workspace: its lock file is complete).
    pub locked: bool,
    pub quiet: bool,
}

/// True if `bytes` is a component rather than a core module (by the header's layer field).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

/// Turn a core module that carries wit-bindgen's component-type section into a component.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

/// Plugin crates (directories with a Cargo.toml) directly under `dir`, sorted.
pub fn crates_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .filter_map(|p| Some((package_name(&p.join("Cargo.toml"))?, p)))
        .collect();
    found.sort();
    found
}

// The `name` of `[package]`, read without a TOML parser (build scripts stay light).
pub fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_string());
        }
    }
    None
}
