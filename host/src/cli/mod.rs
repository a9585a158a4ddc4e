//! Subcommands beyond running the gateway: `wardgate plugin ...` for plugin
//! authors ([`plugin`]), with its crate template ([`scaffold`]) and sample
//! requests ([`samples`]).

pub mod plugin;
pub mod samples;
pub mod scaffold;
