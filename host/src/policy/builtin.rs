//! The built-in plugins, compiled from `plugins/` by `host/build.rs` and
//! embedded in the binary. A chain entry whose `source` is a bare name (or
//! `builtin:NAME`) is looked up here.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}

pub fn names() -> Vec<&'static str> {
    BUILTIN_PLUGINS.iter().map(|(n, _)| *n).collect()
}
