//! Who is calling: JWT authentication ([`jwt`]) with keys from JWKS
//! documents or PEM files, local or fetched and cached ([`jwks`]); API keys
//! ([`api_key`]); users and passwords from htpasswd text ([`basic`]). They
//! run after routing and before the plugin chain, so plugins and CEL see the
//! verified caller as the request's identity.

pub mod api_key;
pub mod basic;
pub mod credential;
pub mod jwks;
pub mod jwt;
mod slow_hash;

/// What one authentication policy decided for one request.
#[derive(Debug)]
pub enum Outcome {
    /// A valid credential: the caller's identity (JWT claims, an API key's
    /// metadata, a user name).
    Verified(serde_json::Value),
    /// No credential (or, in permissive mode, a bad one): go on without
    /// identity.
    Anonymous,
    /// Answer 401 with this reason.
    Rejected(String),
}
