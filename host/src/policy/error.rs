//! Errors of loading a plugin (config time) and of running one (request time).

/// A plugin that could not be loaded for a route. Config time only: a route
/// whose plugin fails to load is never served.
#[derive(Debug, thiserror::Error)]
#[error("route '{route}', plugin '{plugin}': {kind}")]
pub struct LoadError {
    pub route: String,
    pub plugin: String,
    pub kind: LoadErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    #[error("no built-in plugin named '{name}' (built-ins: {available})")]
    UnknownBuiltin { name: String, available: String },
    #[error("cannot read {path}: {error}")]
    Unreadable { path: String, error: String },
    #[error("cannot fetch {reference}: {error}")]
    Fetch { reference: String, error: String },
    #[error(
        "not a WebAssembly component ({0}); build it with `wardgate plugin build` or wit-component"
    )]
    NotComponent(String),
    #[error("failed to compile: {0}")]
    Compile(String),
    #[error(
        "was built for {found}, but this gateway speaks wardgate:policy@0.1.0; rebuild it against wardgate-sdk 0.1"
    )]
    WrongContract { found: String },
    #[error("does not export {expected}; is it a Wardgate policy plugin? (exports: {found})")]
    NoHooks {
        expected: &'static str,
        found: String,
    },
    #[error(
        "imports the '{capability}' capability ({interface}) but is granted only [{granted}]; add it to `grants`"
    )]
    NotGranted {
        capability: &'static str,
        interface: String,
        granted: String,
    },
    #[error("imports '{0}', which the gateway does not provide")]
    UnknownImport(String),
    #[error("invalid config at '{field}': {message}")]
    Config { field: String, message: String },
    #[error("failed while loading ({stage}): {error}")]
    Trapped { stage: &'static str, error: String },
}

/// Why a plugin call failed at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// Ran past its CPU budget and was interrupted.
    Timeout { cpu_ms: u64 },
    /// Tried to grow memory past its cap.
    Memory { limit_mib: u64 },
    /// Trapped (panic, unreachable, out-of-bounds, ...).
    Trap(String),
    /// No instance could be made (e.g. the instance pool is exhausted).
    Instantiate(String),
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureKind::Timeout { cpu_ms } => {
                write!(
                    f,
                    "exceeded its CPU time limit of {cpu_ms} ms and was stopped"
                )
            }
            FailureKind::Memory { limit_mib } => {
                write!(
                    f,
                    "exceeded its memory limit of {limit_mib} MiB and was stopped"
                )
            }
            FailureKind::Trap(msg) => write!(f, "trapped: {msg}"),
            FailureKind::Instantiate(msg) => write!(f, "could not be instantiated: {msg}"),
        }
    }
}

/// A plugin failed while handling a request whose chain entry fails closed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin '{plugin}' on route '{route}' {kind}")]
pub struct PluginFailure {
    pub route: String,
    pub plugin: String,
    pub hook: &'static str,
    pub kind: FailureKind,
}

impl PluginFailure {
    /// The HTTP status this failure answers with.
    pub fn status(&self) -> u16 {
        match self.kind {
            FailureKind::Instantiate(_) => 503,
            _ => 500,
        }
    }
}
