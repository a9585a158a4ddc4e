//! `wardgate plugin new | build | test | push | pull | inspect | list`: the
//! plugin author's loop, from a new crate to an artifact in a registry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use super::samples::{self, Sample};
use super::scaffold::{self, HookSet};
use crate::distribution::oci;
use crate::distribution::store::sha256_digest;
use crate::policy::bindings::{BackendProtocol, Hooks, PluginInfo, RequestContext};
use crate::policy::capabilities::Capability;
use crate::policy::hooks::{OnHttpRequest, OnLlmRequest, OnMcpList, OnMcpRequest};
use crate::policy::spec::OciReference;
use crate::policy::{Chain, EngineOptions, PluginSource, PluginSpec, PolicyEngine, Verdict};
use crate::toolchain::{BuildRequest, Toolchain, crates_in, package_name};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// List the plugins built into this binary (the default).
    List,
    /// Create a plugin crate on wardgate-sdk that builds and passes its tests.
    New {
        /// Folder to create; its name is the crate's name.
        name: PathBuf,
        /// Hook families to implement: any of http, llm, mcp.
        #[arg(long, default_value = "http,llm,mcp")]
        hooks: String,
    },
    /// Build a plugin crate (or every plugin of a Wardgate checkout) into a component.
    Build {
        /// A plugin crate, or a Wardgate checkout (builds plugins/ and examples/plugins/).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Output file (crate) or folder (checkout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The checkout to build (same as PATH; kept for scripts).
        #[arg(long, hide = true)]
        workspace: Option<PathBuf>,
    },
    /// Run a plugin against sample requests and print each decision.
    Test {
        /// A component file, or a plugin crate to build first.
        path: PathBuf,
        /// The plugin's config: JSON text, or @FILE.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Sample requests (JSON; see `wardgate plugin test --help`).
        #[arg(long)]
        input: PathBuf,
    },
    /// Push a component to an OCI registry.
    Push {
        file: PathBuf,
        /// oci://host[:port]/repo:tag
        reference: String,
        /// Plain HTTP although the registry is not on loopback.
        #[arg(long)]
        insecure: bool,
    },
    /// Pull a plugin from an OCI registry (verifying every digest).
    Pull {
        reference: String,
        /// Where to write the component (default: REPO.wasm).
        #[arg(short, long)]
        out: Option<PathBuf>,
        #[arg(long)]
        insecure: bool,
    },
    /// Show a plugin's digest, size, WIT world, exports, hooks and config schema.
    Inspect {
        /// A component file or an oci:// reference.
        target: String,
        #[arg(long)]
        insecure: bool,
    },
}

pub fn run(command: PluginCommand) -> Result<(), String> {
    match command {
        PluginCommand::List => {
            for name in crate::policy::builtin::names() {
                println!("{name}");
            }
            Ok(())
        }
        PluginCommand::New { name, hooks } => {
            scaffold::create(&name, HookSet::parse(&hooks)?)?;
            println!(
                "created {}: a plugin crate with hooks {hooks}",
                name.display()
            );
            println!(
                "next: cd {} && cargo test && wardgate plugin build .",
                name.display()
            );
            Ok(())
        }
        PluginCommand::Build {
            path,
            out,
            workspace,
        } => build(&workspace.unwrap_or(path), out.as_deref()),
        PluginCommand::Test {
            path,
            config,
            input,
        } => test(&path, &config, &input),
        PluginCommand::Push {
            file,
            reference,
            insecure,
        } => push(&file, &reference, insecure),
        PluginCommand::Pull {
            reference,
            out,
            insecure,
        } => pull(&reference, out, insecure),
        PluginCommand::Inspect { target, insecure } => inspect(&target, insecure),
    }
}

fn engine() -> Result<PolicyEngine, String> {
    PolicyEngine::new(EngineOptions {
        max_instances: 16,
        max_memory_mib: 1024,
        code_cache: None,
    })
    .map_err(|e| format!("cannot start the plugin runtime: {e:#}"))
}

/// Is `dir` a Wardgate checkout rather than one plugin crate?
fn is_checkout(dir: &Path) -> bool {
    dir.join("plugins").is_dir() && dir.join("host/Cargo.toml").is_file()
}

fn build(path: &Path, out: Option<&Path>) -> Result<(), String> {
    let toolchain = Toolchain::detect()?;
    if is_checkout(path) {
        return build_checkout(
            &toolchain,
            path,
            out.unwrap_or(&path.join("target/wasm/components")),
        );
    }
    let manifest = path.join("Cargo.toml");
    let name = package_name(&manifest).ok_or_else(|| {
        format!(
            "{} is not a plugin crate (no [package] name in Cargo.toml)",
            path.display()
        )
    })?;
    // Share the checkout's wasm target folder when building next to it: the
    // SDK and std are then already compiled.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm");
            if shared.is_dir() {
                shared
            } else {
                path.join("target/wasm")
            }
        });
    println!("building {name} with {}", toolchain.describe());
    let built = toolchain.build(&BuildRequest {
        manifest: &manifest,
        packages: std::slice::from_ref(&name),
        target_dir: &target_dir,
        profile: "plugin",
        locked: false,
        quiet: false,
    })?;
    let (_, file) = built
        .into_iter()
        .next()
        .ok_or("the build produced nothing")?;
    let dest = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| path.join(format!("{name}.wasm")));
    std::fs::copy(&file, &dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    let bytes = std::fs::read(&dest).map_err(|e| e.to_string())?;
    println!("{}", dest.display());
    describe_component(&bytes)?;
    Ok(())
}

fn build_checkout(toolchain: &Toolchain, workspace: &Path, out: &Path) -> Result<(), String> {
    let names: Vec<String> = ["plugins", "examples/plugins"]
        .iter()
        .flat_map(|dir| crates_in(&workspace.join(dir)))
        .map(|(name, _)| name)
        .collect();
    if names.is_empty() {
        return Err(format!(
            "no plugin crates under {}/plugins or examples/plugins",
            workspace.display()
        ));
    }
    println!(
        "building {} with {}",
        names.join(", "),
        toolchain.describe()
    );
    let built = toolchain.build(&BuildRequest {
        manifest: &workspace.join("Cargo.toml"),
        packages: &names,
        target_dir: &workspace.join("target/wasm"),
        profile: "plugin",
        locked: false,
        quiet: false,
    })?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for (name, path) in built {
        let dest = out.join(format!("{name}.wasm"));
        std::fs::copy(&path, &dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        println!("{size:>10} bytes  {}", dest.display());
    }
    Ok(())
}

/// Size, digest, world, exports and the plugin's own description.
fn describe_component(bytes: &[u8]) -> Result<PluginInfo, String> {
    println!("  size      {} bytes", bytes.len());
    println!("  digest    {}", sha256_digest(bytes));
    if let Some((imports, exports, target)) = oci::world_of(bytes) {
        println!("  world     {target}");
        println!("  exports   {}", exports.join(", "));
        println!("  imports   {}", imports.join(", "));
    }
    let info = engine()?.describe(bytes).map_err(|e| e.to_string())?;
    println!("  plugin    {} {}", info.name, info.version);
    println!("  hooks     {}", hook_names(info.hooks).join(", "));
    match &info.config_schema {
        Some(schema) => println!("  config    {schema}"),
        None => println!("  config    (no schema shipped)"),
    }
    Ok(info)
}

fn hook_names(hooks: Hooks) -> Vec<&'static str> {
    [
        (Hooks::HTTP_REQUEST, "http-request"),
        (Hooks::HTTP_RESPONSE, "http-response"),
        (Hooks::LLM_REQUEST, "llm-request"),
        (Hooks::LLM_RESPONSE, "llm-response"),
        (Hooks::LLM_CHUNK, "llm-chunk"),
        (Hooks::MCP_REQUEST, "mcp-request"),
        (Hooks::MCP_LIST, "mcp-list"),
        (Hooks::MCP_RESPONSE, "mcp-response"),
    ]
    .into_iter()
    .filter(|(flag, _)| hooks.contains(*flag))
    .map(|(_, name)| name)
    .collect()
}

fn test(path: &Path, config: &str, input: &Path) -> Result<(), String> {
    let file = if path.is_dir() {
        let name = package_name(&path.join("Cargo.toml"))
            .ok_or_else(|| format!("{} is not a plugin crate", path.display()))?;
        let file = path.join(format!("{name}.wasm"));
        build(path, Some(&file))?;
        file
    } else {
        path.to_path_buf()
    };
    let config_text = match config.strip_prefix('@') {
        Some(f) => std::fs::read_to_string(f).map_err(|e| format!("cannot read {f}: {e}"))?,
        None => config.to_string(),
    };
    let config: serde_json::Value =
        serde_json::from_str(&config_text).map_err(|e| format!("--config is not JSON: {e}"))?;
    let text = std::fs::read_to_string(input)
        .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let samples = samples::parse_all(&text).map_err(|e| format!("{}: {e}", input.display()))?;

    let engine = engine()?;
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_string();
    let spec = PluginSpec {
        name: name.clone(),
        source: Some(PluginSource::File(file.clone())),
        config,
        failure_mode: Default::default(),
        isolation: None,
        limits: Default::default(),
        grants: Some(Capability::ALL.to_vec()),
        insecure: false,
    };
    // Loaded as on a route of the samples' protocol; mixed samples, as on
    // an HTTP route (whose plugins still get every hook here).
    let all = |kind: fn(&Sample) -> bool| !samples.is_empty() && samples.iter().all(kind);
    let protocol = if all(|s| matches!(s, Sample::Mcp(_) | Sample::McpList(_))) {
        BackendProtocol::Mcp
    } else if all(|s| matches!(s, Sample::Llm(_))) {
        BackendProtocol::Llm
    } else {
        BackendProtocol::Http
    };
    let plugin = engine
        .load(&spec, "plugin-test", protocol)
        .map_err(|e| e.to_string())?;
    let chain = Chain::new(vec![Arc::new(plugin)]);
    let mut denied = 0;
    let total = samples.len();
    for (i, mut sample) in samples.into_iter().enumerate() {
        let before = sample.to_json();
        let ctx = RequestContext {
            route: "plugin-test".into(),
            client_address: "127.0.0.1:40000".into(),
            identity: None,
            request_id: format!("sample-{}", i + 1),
        };
        let mut run = chain.start(ctx);
        let verdict = match &mut sample {
            Sample::Http(r) => run.run::<OnHttpRequest>(r),
            Sample::Llm(r) => run.run::<OnLlmRequest>(r),
            Sample::Mcp(r) => run.run::<OnMcpRequest>(r),
            Sample::McpList(l) => run.run::<OnMcpList>(l),
        };
        let implemented = !run.decisions.is_empty();
        drop(run);
        let label = sample.label();
        match verdict {
            Err(failure) => {
                denied += 1;
                println!("{:>3}  {label}: FAILED  {}", i + 1, failure.kind);
            }
            Ok(Verdict::Deny { denial, .. }) => {
                denied += 1;
                let code = denial
                    .jsonrpc_code
                    .map(|c| format!(" (JSON-RPC {c})"))
                    .unwrap_or_default();
                println!(
                    "{:>3}  {label}: deny {}{code}  {}",
                    i + 1,
                    denial.status,
                    denial.body
                );
            }
            Ok(Verdict::Continue) if !implemented => {
                println!(
                    "{:>3}  {label}: continue (the plugin has no hook for this kind)",
                    i + 1
                );
            }
            Ok(Verdict::Continue) => {
                let after = sample.to_json();
                if after == before {
                    println!("{:>3}  {label}: continue", i + 1);
                } else {
                    println!("{:>3}  {label}: modify  {after}", i + 1);
                }
            }
        }
    }
    println!("{name}: {total} samples, {denied} denied or failed");
    Ok(())
}

fn bar(action: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(action.to_string());
    bar
}

fn parse_reference(text: &str) -> Result<OciReference, String> {
    match PluginSource::try_from(text.to_string())? {
        PluginSource::Oci(r) => Ok(r),
        _ => Err(format!(
            "'{text}' is not an OCI reference; write oci://host[:port]/repo:tag"
        )),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn push(file: &Path, reference: &str, insecure: bool) -> Result<(), String> {
    let r = parse_reference(reference)?;
    if r.digest.is_some() {
        return Err("push to a tag (oci://host/repo:tag), not a digest".into());
    }
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    // A plugin of another contract version would only fail at load: refuse it now.
    engine()?
        .describe(&bytes)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let bar = bar("push");
    let digest = block_on(oci::push(&r, bytes, insecure, Some(&bar))).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    println!("pushed {r}");
    println!("digest {digest}");
    println!(
        "pin it: {}@{digest}",
        OciReference {
            tag: None,
            digest: None,
            ..r
        }
    );
    Ok(())
}

fn pull(reference: &str, out: Option<PathBuf>, insecure: bool) -> Result<(), String> {
    let r = parse_reference(reference)?;
    let bar = bar("pull");
    let pulled = block_on(oci::pull(&r, insecure, Some(&bar))).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let store = crate::distribution::store::Store::open(crate::distribution::cache_dir())?;
    store.put(&r.to_string(), &pulled.manifest_digest, &pulled.bytes)?;
    let dest = out.unwrap_or_else(|| {
        let repo = r.repository.rsplit('/').next().unwrap_or("plugin");
        PathBuf::from(format!("{repo}.wasm"))
    });
    std::fs::write(&dest, &pulled.bytes)
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    println!("pulled {r}");
    println!("digest {}", pulled.manifest_digest);
    println!("wrote  {} ({} bytes)", dest.display(), pulled.bytes.len());
    Ok(())
}

fn inspect(target: &str, insecure: bool) -> Result<(), String> {
    if target.starts_with("oci://") {
        let r = parse_reference(target)?;
        let pulled = block_on(oci::pull(&r, insecure, None)).map_err(|e| e.to_string())?;
        println!("{r}");
        println!("  manifest  {}", pulled.manifest_digest);
        println!("  layer     {}", pulled.manifest.layers[0].digest);
        if let Some(created) = pulled.config.get("created") {
            println!("  created   {created}");
        }
        describe_component(&pulled.bytes)?;
    } else {
        let bytes = std::fs::read(target).map_err(|e| format!("cannot read {target}: {e}"))?;
        if !crate::toolchain::is_component(&bytes) {
            return Err(format!(
                "{target} is not a WebAssembly component; build it with `wardgate plugin build`"
            ));
        }
        println!("{target}");
        describe_component(&bytes)?;
    }
    Ok(())
}
