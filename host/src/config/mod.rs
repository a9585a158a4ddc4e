//! Configuration: the YAML schema ([`schema`]), reading it with precise
//! errors ([`load`]) and positions for the errors found later ([`locate`]), relative paths ([`paths`]) and policy sugar ([`sugar`]). [`crate::gateway`] turns a
//! checked config into the immutable snapshot that serves requests.

pub mod load;
pub mod locate;
pub mod paths;
pub mod schema;
pub mod sugar;

pub use load::{ConfigError, load_file, parse};
pub use schema::Config;

/// The config `wardgate run` serves when given no file: a demo a first-time
/// user can try with curl, needing nothing else.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");
