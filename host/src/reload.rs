//! Replacing the running config: on SIGHUP, on `POST /reload`, and when the
//! file changes. The new snapshot (plugins included) is built off the request
//! path and swapped in atomically; requests in flight finish on the old one.
//! A config that fails to build is reported and the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config;
use crate::gateway::Gateway;
use crate::proxy::Shared;

/// Worker threads and the plugin instance pool are made once, at start.
fn fixed_at_start(
    was: &config::schema::Settings,
    now: &config::schema::Settings,
) -> Result<(), String> {
    unchanged(
        "workerThreads",
        "the worker count",
        "one per core",
        was.worker_threads,
        now.worker_threads,
    )?;
    unchanged(
        "pluginInstances",
        "the instance pool",
        "the default",
        was.plugin_instances,
        now.plugin_instances,
    )
}

/// A refusal naming `config.<key>` if it differs (unset shows as `default`).
fn unchanged<T: PartialEq + std::fmt::Display>(
    key: &str,
    what: &str,
    default: &str,
    was: Option<T>,
    now: Option<T>,
) -> Result<(), String> {
    if was == now {
        return Ok(());
    }
    let show = |n: Option<T>| n.map_or(default.to_string(), |n| n.to_string());
    Err(format!(
        "config.{key} changed ({} -> {}); {what} is set at start and needs a restart",
        show(was),
        show(now)
    ))
}

/// Rebuild from `path` and swap it in.
pub async fn reload(shared: Arc<Shared>, path: PathBuf) -> Result<(), String> {
    // One reload at a time: two racing builds could swap in the older file.
    let _guard = shared.reload_lock.lock().await;
    let builder = shared.clone();
    let file = path.clone();
    let built = tokio::task::spawn_blocking(move || -> Result<Gateway, String> {
        let config = config::load_file(&file).map_err(|e| e.to_string())?;
        let current = builder.gateway();
        // Settings fixed at start are checked before any plugin loads: the
        // build would otherwise compete for the instance pool in vain.
        fixed_at_start(&current.config.config, &config.config)?;
        let gateway = Gateway::build(config, &builder.engine, &builder.backends)
            .map_err(|e| e.to_string())?;
        let old: Vec<_> = current.binds.iter().map(|b| b.addr).collect();
        let new: Vec<_> = gateway.binds.iter().map(|b| b.addr).collect();
        if old != new {
            return Err("binds changed; adding or moving ports needs a restart".into());
        }
        Ok(gateway)
    })
    .await
    .map_err(|e| format!("reload task failed: {e}"))?;
    match built {
        Ok(gateway) => {
            shared.publish(Arc::new(gateway));
            shared
                .ready
                .store(true, std::sync::atomic::Ordering::Release);
            tracing::info!(config = %path.display(), "config reloaded");
            Ok(())
        }
        Err(e) => {
            tracing::error!(config = %path.display(), "reload rejected, keeping the running config: {e}");
            Err(e)
        }
    }
}

/// Reload on every SIGHUP.
pub async fn on_sighup(shared: Arc<Shared>, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let _ = reload(shared.clone(), path.clone()).await;
    }
}

/// What the file watcher compares: modification time and size.
pub type Stamp = Option<(SystemTime, u64)>;

pub fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reload when the file's modification time or size changes (polled each
/// second: no inotify needed, and editors that replace the file work too).
/// `loaded` is the file's stamp from before it was read at start-up, so an
/// edit made while the gateway was starting is not missed.
pub async fn on_file_change(shared: Arc<Shared>, path: PathBuf, loaded: Stamp) {
    let mut last = loaded;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = stamp(&path);
        if now.is_some() && now != last {
            last = now;
            let _ = reload(shared.clone(), path.clone()).await;
        }
    }
}
