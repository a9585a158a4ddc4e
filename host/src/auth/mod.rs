//! Who is calling: JWT authentication ([`jwt`]) with keys from JWKS
//! documents or PEM files, local or fetched and cached ([`jwks`]). It runs
//! after routing and before the plugin chain, so plugins and CEL see the
//! verified claims as the request's identity.

pub mod jwks;
pub mod jwt;
