//! The `wardgate` command: `run`, `validate`, `plugin ...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use wardgate::backend::http::HttpBackends;
use wardgate::cli::plugin::PluginCommand;
use wardgate::config::schema::{AccessLogFormat, Settings};
use wardgate::config::{self, Config};
use wardgate::gateway::Gateway;
use wardgate::listener::drain::Termination;
use wardgate::listener::workers::Workers;
use wardgate::policy::{EngineOptions, PolicyEngine};
use wardgate::proxy::Shared;
use wardgate::telemetry::{log_fields, log_output};
use wardgate::{admin, listener, reload};

// glibc's malloc took a sixth of the proxy's user time under load; mimalloc's
// thread-local free lists make the many small per-request allocations cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Plugin authoring and distribution: new, build, test, push, pull, inspect, list.
    #[command(alias = "plugins")]
    Plugin {
        #[command(subcommand)]
        action: Option<PluginCommand>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Validate { config } => validate(&config),
        Command::Plugin { action } => {
            match wardgate::cli::plugin::run(action.unwrap_or(PluginCommand::List)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
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
    let engine = match PolicyEngine::new(engine_options(&config.config)) {
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
        Err(e) if e.location.is_some() => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn engine_options(settings: &Settings) -> EngineOptions {
    let defaults = EngineOptions::default();
    EngineOptions {
        code_cache: Some(wardgate::distribution::cache_dir().join("compiled")),
        max_instances: settings
            .plugin_instances
            .map_or(defaults.max_instances, |n| n.get()),
        ..defaults
    }
}

/// Logs go to stderr through a background writer; the returned guard writes
/// out what is still waiting when dropped, so keep it until exit.
fn init_tracing(format: AccessLogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let (writer, guard) = log_output::stderr();
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = match format {
        AccessLogFormat::Json => builder.json().flatten_event(true).try_init(),
        AccessLogFormat::Text if ansi => builder.try_init(),
        AccessLogFormat::Text => builder.fmt_fields(log_fields::PlainFields).try_init(),
    };
    guard
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
    let log_guard = init_tracing(config.config.access_log);
    // Requests are served on the workers' runtimes (listener::workers); this
    // one accepts connections and runs the admin listener, reloads and signals.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wardgate-main")
        .enable_all()
        .build()
        .expect("tokio runtime");
    let served = runtime.block_on(serve(config, path, loaded));
    drop(log_guard);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, path: Option<PathBuf>, loaded: reload::Stamp) -> anyhow::Result<()> {
    let engine = Arc::new(PolicyEngine::new(engine_options(&config.config))?);
    let workers = listener::workers::count(config.config.worker_threads);
    let backends = Arc::new(HttpBackends::new(Duration::from_secs(10), workers));
    backends.sweep_idle(Duration::from_secs(30));
    let built = {
        let engine = engine.clone();
        let backends = backends.clone();
        let config = config.clone();
        // Loading plugins compiles and snapshots them: keep it off the async workers.
        tokio::task::spawn_blocking(move || Gateway::build(config, &engine, &backends)).await?
    };
    // A plugin that cannot be fetched yet (registry down, nothing cached):
    // listen, report not ready, answer 503 and keep trying. Any other error
    // is the config's and ends the start.
    let (gateway, waiting) = match built {
        Ok(g) => (g, false),
        Err(e) if e.retryable => {
            eprintln!("warning: not ready: {e}; retrying every {RETRY_LOAD:?}");
            (Gateway::waiting(config.clone())?, true)
        }
        Err(e) => return Err(e.into()),
    };
    let addrs: Vec<_> = gateway.binds.iter().map(|b| b.addr).collect();
    let sockets = listener::bind_all(&addrs).await?;
    let admin_socket = listener::bind_all(&[gateway.admin_addr]).await?.remove(0);
    for (bind, socket) in gateway.binds.iter().zip(&sockets) {
        let local = socket.local_addr()?;
        let scheme = if bind.tls.is_some() { "https" } else { "http" };
        if waiting {
            println!("wardgate listening on {scheme}://{local} (not ready: plugins still loading)");
        }
        for l in &bind.listeners {
            let routes: Vec<&str> = l.routes.routes().iter().map(|r| r.name.as_str()).collect();
            println!(
                "wardgate listening on {scheme}://{local} (listener {}: routes {})",
                l.name,
                routes.join(", ")
            );
        }
    }
    println!("admin on http://{}", admin_socket.local_addr()?);

    let shared = Arc::new(Shared::new(
        gateway,
        engine,
        backends,
        path.clone(),
        workers,
    ));
    if waiting {
        shared
            .ready
            .store(false, std::sync::atomic::Ordering::Release);
        tokio::spawn(retry_until_loaded(shared.clone(), config));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (drain_tx, drain_rx) = watch::channel(None);
    let (workers, dispatch) = Workers::start(workers, shared.clone(), drain_rx)?;
    // The acceptors hold the only handles to the workers: once they stop,
    // the workers drain and end.
    let dispatch = Arc::new(dispatch);
    for (bind, socket) in sockets.into_iter().enumerate() {
        tokio::spawn(listener::accept(
            socket,
            bind,
            dispatch.clone(),
            stop_rx.clone(),
        ));
    }
    drop(dispatch);
    // The admin port outlives the drain, so `/readyz` can say it is on.
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    let admin = tokio::spawn(admin::serve(shared.clone(), admin_socket, admin_stop_rx));
    if let Some(path) = path {
        tokio::spawn(reload::on_sighup(shared.clone(), path.clone()));
        tokio::spawn(reload::on_file_change(shared.clone(), path, loaded));
    }

    shutdown_signal().await;
    let Termination { min, max } = shared.gateway().termination;
    tracing::info!(
        "shutting down: draining connections (accepting for {}s more, closing what is still open after {}s)",
        min.as_secs_f64(),
        max.as_secs_f64()
    );
    shared
        .draining
        .store(true, std::sync::atomic::Ordering::Release);
    let _ = drain_tx.send(Some(tokio::time::Instant::now() + max));
    // Clients a load balancer still sends here meanwhile are served.
    tokio::time::sleep(min).await;
    let _ = stop_tx.send(true);
    tokio::task::spawn_blocking(move || workers.join()).await?;
    let _ = admin_stop.send(true);
    let _ = admin.await;
    tracing::info!("drained: exiting");
    Ok(())
}

const RETRY_LOAD: Duration = Duration::from_secs(5);

async fn retry_until_loaded(shared: Arc<Shared>, config: Config) {
    loop {
        tokio::time::sleep(RETRY_LOAD).await;
        if shared.ready.load(std::sync::atomic::Ordering::Acquire) {
            return; // a reload of the file got there first
        }
        let (engine, backends, config) = (
            shared.engine.clone(),
            shared.backends.clone(),
            config.clone(),
        );
        let built =
            tokio::task::spawn_blocking(move || Gateway::build(config, &engine, &backends)).await;
        match built {
            Ok(Ok(gateway)) => {
                shared.publish(Arc::new(gateway));
                shared
                    .ready
                    .store(true, std::sync::atomic::Ordering::Release);
                tracing::info!("every plugin loaded: ready");
                return;
            }
            Ok(Err(e)) => tracing::warn!("still not ready: {e}"),
            Err(e) => tracing::error!("load task failed: {e}"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
