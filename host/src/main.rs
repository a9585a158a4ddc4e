//! The `wardgate` command: `run`, `validate`, `plugins`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use wardgate::backend::http::HttpBackends;
use wardgate::config::{self, Config, schema::AccessLogFormat};
use wardgate::gateway::Gateway;
use wardgate::policy::{EngineOptions, PolicyEngine, builtin};
use wardgate::proxy::Shared;
use wardgate::{admin, listener, reload};

#[derive(Parser)]
#[command(
    name = "wardgate",
    version,
    about = "A gateway for AI-agent traffic with WebAssembly policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without -c, serves the embedded demo config.
    Run {
        /// Config file (YAML).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Check a config file, plugins included, and exit.
    Validate {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// List the plugins built into this binary, or build plugin crates.
    Plugins {
        #[command(subcommand)]
        action: Option<PluginsAction>,
    },
}

#[derive(Subcommand)]
enum PluginsAction {
    /// List the built-in plugins (the default).
    List,
    /// Build every crate in plugins/ and examples/plugins/ of a Wardgate
    /// checkout into components, with the detected toolchain.
    Build {
        /// The checkout (the folder with the workspace Cargo.toml).
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Where to put the components.
        #[arg(long, default_value = "target/wasm/components")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Validate { config } => validate(&config),
        Command::Plugins {
            action: None | Some(PluginsAction::List),
        } => {
            for name in builtin::names() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Command::Plugins {
            action: Some(PluginsAction::Build { workspace, out }),
        } => match build_plugins(&workspace, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn build_plugins(workspace: &Path, out: &Path) -> Result<(), String> {
    use wardgate::toolchain::{BuildRequest, Toolchain, crates_in};
    let toolchain = Toolchain::detect()?;
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
        println!("{:>10} bytes  {}", size, dest.display());
    }
    Ok(())
}

fn read_config(path: Option<&Path>) -> Result<Config, config::ConfigError> {
    match path {
        Some(p) => config::load_file(p),
        None => config::parse("<embedded default config>", config::EMBEDDED_DEFAULT),
    }
}

fn validate(path: &Path) -> ExitCode {
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = match PolicyEngine::new(EngineOptions::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the plugin runtime: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match Gateway::check(&config, &engine) {
        Ok(notes) => {
            for note in notes {
                println!("note: {note}");
            }
            println!("{}: config is valid", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: AccessLogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        AccessLogFormat::Json => builder.json().flatten_event(true).try_init(),
        AccessLogFormat::Text => builder.try_init(),
    };
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let loaded = path.as_deref().map(reload::stamp).unwrap_or(None);
    let config = match read_config(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(config.config.access_log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(serve(config, path, loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, path: Option<PathBuf>, loaded: reload::Stamp) -> anyhow::Result<()> {
    let engine = Arc::new(PolicyEngine::new(EngineOptions::default())?);
    let backends = Arc::new(HttpBackends::new(Duration::from_secs(10)));
    let gateway = {
        let engine = engine.clone();
        let backends = backends.clone();
        // Loading plugins compiles and snapshots them: keep it off the async workers.
        tokio::task::spawn_blocking(move || Gateway::build(config, &engine, &backends)).await??
    };
    let addrs: Vec<_> = gateway.binds.iter().map(|b| b.addr).collect();
    let sockets = listener::bind_all(&addrs).await?;
    let admin_socket = listener::bind_all(&[gateway.admin_addr]).await?.remove(0);
    for (bind, socket) in gateway.binds.iter().zip(&sockets) {
        let local = socket.local_addr()?;
        for l in &bind.listeners {
            let routes: Vec<&str> = l.routes.routes().iter().map(|r| r.name.as_str()).collect();
            println!(
                "wardgate listening on {}://{local} (listener {}: routes {})",
                if bind.tls.is_some() { "https" } else { "http" },
                l.name,
                routes.join(", ")
            );
        }
    }
    println!("admin on http://{}", admin_socket.local_addr()?);

    let shared = Arc::new(Shared::new(gateway, engine, backends, path.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (bind, socket) in sockets.into_iter().enumerate() {
        tasks.push(tokio::spawn(listener::serve(
            shared.clone(),
            socket,
            bind,
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(admin::serve(
        shared.clone(),
        admin_socket,
        stop_rx.clone(),
    )));
    if let Some(path) = path {
        tokio::spawn(reload::on_sighup(shared.clone(), path.clone()));
        tokio::spawn(reload::on_file_change(shared.clone(), path, loaded));
    }

    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
