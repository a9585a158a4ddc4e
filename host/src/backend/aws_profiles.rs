//! The AWS SDKs' shared files, read as they read them: the credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`; sections
//! named by profile) and the config file (`AWS_CONFIG_FILE`, else
//! `~/.aws/config`; sections `[default]` and `[profile NAME]`, and
//! `[sso-session NAME]` for IAM Identity Center sign-ins). A setting in the
//! credentials file wins over the config file's.

use std::collections::HashMap;
use std::path::PathBuf;

type Sections = HashMap<String, HashMap<String, String>>;

pub struct SharedFiles {
    credentials: Sections,
    config: Sections,
    sso_sessions: Sections,
}

fn file(var: &str, default: &str) -> Option<PathBuf> {
    match std::env::var(var).ok().filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var("HOME")
            .ok()
            .map(|home| PathBuf::from(home).join(default)),
    }
}

/// `[section]` headers and `key = value` lines; comments and the SDKs'
/// nested (indented) sub-settings are skipped. The profiles, and the config
/// file's `sso-session` sections.
fn parse(text: &str, config_file: bool) -> (Sections, Sections) {
    let mut sections = Sections::new();
    let mut sessions = Sections::new();
    let mut current: Option<(bool, String)> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            // The config file names profiles `profile NAME`, but `default`.
            current = match (config_file, name.strip_prefix("profile ")) {
                (true, Some(profile)) => Some((false, profile.trim().to_string())),
                (true, None) if name == "default" => Some((false, name.to_string())),
                (true, None) => name
                    .strip_prefix("sso-session ")
                    .map(|session| (true, session.trim().to_string())),
                (false, _) => Some((false, name.to_string())),
            };
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        if let (Some((session, section)), Some((key, value))) = (&current, line.split_once('=')) {
            let into = if *session {
                &mut sessions
            } else {
                &mut sections
            };
            into.entry(section.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    (sections, sessions)
}

impl SharedFiles {
    pub fn load() -> SharedFiles {
        let read = |path: Option<PathBuf>| {
            path.and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default()
        };
        SharedFiles::from_text(
            &read(file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")),
            &read(file("AWS_CONFIG_FILE", ".aws/config")),
        )
    }

    pub fn from_text(credentials: &str, config: &str) -> SharedFiles {
        let (config, sso_sessions) = parse(config, true);
        SharedFiles {
            credentials: parse(credentials, false).0,
            config,
            sso_sessions,
        }
    }

    /// A profile's setting.
    pub fn get(&self, profile: &str, key: &str) -> Option<&str> {
        [&self.credentials, &self.config]
            .into_iter()
            .find_map(|s| s.get(profile)?.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn has(&self, profile: &str) -> bool {
        self.credentials.contains_key(profile) || self.config.contains_key(profile)
    }

    /// A setting of `[sso-session NAME]`; `None` for a session the config
    /// file does not have.
    pub fn sso_session(&self, name: &str) -> Option<&HashMap<String, String>> {
        self.sso_sessions.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_as_the_sdks_read_them() {
        let files = SharedFiles::from_text(
            "[default]\naws_access_key_id = AKID1\n# a comment\n[ops]\naws_secret_access_key=S\n",
            "[default]\nregion = eu-west-1\n[profile ops]\nrole_arn = arn:aws:iam::1:role/r\naws_secret_access_key = from-config\ns3 =\n  max_concurrent_requests = 20\n[sso-session corp]\nsso_region = us-east-1\n",
        );
        assert_eq!(files.get("default", "aws_access_key_id"), Some("AKID1"));
        assert_eq!(files.get("default", "region"), Some("eu-west-1"));
        assert_eq!(files.get("ops", "role_arn"), Some("arn:aws:iam::1:role/r"));
        // The credentials file wins.
        assert_eq!(files.get("ops", "aws_secret_access_key"), Some("S"));
        assert_eq!(files.get("ops", "max_concurrent_requests"), None);
        assert!(!files.has("corp") && !files.has("sso-session corp"));
        assert_eq!(
            files.sso_session("corp").unwrap()["sso_region"],
            "us-east-1"
        );
        assert!(files.sso_session("ops").is_none());
    }
}
