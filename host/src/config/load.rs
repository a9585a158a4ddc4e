//! Reading a config file: `${ENV}` substitution, YAML parsing with the line,
//! column and config path of every error, a suggestion for misspelled keys,
//! and the checks that need the whole config.

use std::fmt;
use std::path::Path;

use super::schema::{BackendKind, Config};

/// A config that could not be used, with where and why.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// File name (or `<embedded>`).
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Config path such as `binds[0].listeners[0].routes[2].backends[0]`.
    pub path: String,
    pub message: String,
    /// The source lines around the error, when known.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Read and check a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: None,
        column: None,
        path: String::new(),
        message: format!("cannot read config: {e}"),
        snippet: None,
    })?;
    let mut config = parse(&path.display().to_string(), &text)?;
    config.base_dir = Some(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ".".into()),
    );
    super::paths::resolve(&mut config);
    Ok(config)
}

/// Parse and check config text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let text = substitute_env(file, text)?;
    let mut path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(&text, |de| {
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    let config = parsed.map_err(|e| {
        let location = e.location();
        let message = strip_location(&e.to_string());
        ConfigError {
            file: file.to_string(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            path: if path == "." { String::new() } else { path },
            message: with_suggestion(&message),
            snippet: location.map(|l| snippet(&text, l.line())),
        }
    })?;
    let mut config = config;
    config.source = Some(std::sync::Arc::new(super::locate::Source::index(
        file, &text,
    )));
    check(file, &config)?;
    Ok(config)
}

// serde-saphyr renders "error: line L column C: message\n --> ..." with a
// snippet; we print position and snippet ourselves, so keep the message only.
fn strip_location(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.find(": ") {
        Some(i) if first.starts_with("line ") => first[i + 2..].to_string(),
        _ => first.to_string(),
    }
}

pub(super) fn snippet(text: &str, line: u64) -> String {
    let line = line as usize;
    text.lines()
        .enumerate()
        .skip(line.saturating_sub(3))
        .take(3.min(line))
        .map(|(i, l)| format!("{:>5} | {l}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// "unknown field `backendz`, expected one of ..." gets "; did you mean `backends`?".
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))
    else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates = expected
        .trim_start_matches(", expected one of ")
        .trim_start_matches(", expected ")
        .split(", ")
        .map(|c| c.trim_matches('`'));
    let best = candidates
        .map(|c| (edit_distance(&unknown.to_lowercase(), &c.to_lowercase()), c))
        .min();
    match best {
        Some((d, c)) if d <= 2.max(unknown.len() / 3) => format!("{message}; did you mean `{c}`?"),
        _ => message.to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != *cb) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Replace `${NAME}` with the environment variable and `${file:PATH}` with
/// the file's contents; an unset variable or unreadable file is an error at
/// its line. `$${` escapes a literal `${`.
fn substitute_env(file: &str, text: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("${") {
            if rest[..i].ends_with('$') {
                out.push_str(&rest[..i - 1]);
                out.push_str("${");
                rest = &rest[i + 2..];
                continue;
            }
            out.push_str(&rest[..i]);
            let end = rest[i..].find('}').ok_or_else(|| ConfigError {
                file: file.into(),
                line: Some(n as u64 + 1),
                column: Some((line.len() - rest.len() + i) as u64 + 1),
                path: String::new(),
                message: "unterminated ${...}".into(),
                snippet: None,
            })?;
            let name = &rest[i + 2..i + end];
            let at = |message: String| ConfigError {
                file: file.into(),
                line: Some(n as u64 + 1),
                column: Some((line.len() - rest.len() + i) as u64 + 1),
                path: String::new(),
                message,
                snippet: None,
            };
            // `${file:PATH}` reads a secret from a file (trailing newline dropped).
            let value = match name.strip_prefix("file:") {
                Some(path) => std::fs::read_to_string(path)
                    .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| at(format!("cannot read secret file {path}: {e}")))?,
                None => std::env::var(name)
                    .map_err(|_| at(format!("environment variable {name} is not set")))?,
            };
            out.push_str(&value);
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Checks that need more than one value at a time.
fn check(file: &str, config: &Config) -> Result<(), ConfigError> {
    let err = |path: String, message: String| ConfigError {
        file: file.to_string(),
        line: None,
        column: None,
        path,
        message,
        snippet: None,
    };
    let mut ports = std::collections::HashSet::new();
    for (b, bind) in config.binds.iter().enumerate() {
        if !ports.insert(bind.port) {
            return Err(err(
                format!("binds[{b}].port"),
                format!("port {} is bound twice", bind.port),
            ));
        }
        for (l, listener) in bind.listeners.iter().enumerate() {
            for (r, route) in listener.routes.iter().enumerate() {
                let at = format!("binds[{b}].listeners[{l}].routes[{r}]");
                let answers_itself = route.policies.direct_response.is_some()
                    || route.policies.request_redirect.is_some();
                if route.backends.is_empty() && !answers_itself {
                    return Err(err(
                        format!("{at}.backends"),
                        "a route needs at least one backend, a directResponse or a requestRedirect"
                            .into(),
                    ));
                }
                for (k, backend) in route.backends.iter().enumerate() {
                    if let BackendKind::Mcp(mcp) = &backend.kind {
                        let mut names = std::collections::HashSet::new();
                        for (t, target) in mcp.targets.iter().enumerate() {
                            let at = format!("{at}.backends[{k}].mcp.targets[{t}]");
                            let kinds = [
                                target.stdio.is_some(),
                                target.mcp.is_some(),
                                target.sse.is_some(),
                            ];
                            if kinds.iter().filter(|k| **k).count() != 1 {
                                return Err(err(
                                    at,
                                    "a target needs exactly one of `stdio`, `mcp` or `sse`".into(),
                                ));
                            }
                            if !names.insert(&target.name) {
                                return Err(err(
                                    format!("{at}.name"),
                                    format!("target name '{}' is used twice", target.name),
                                ));
                            }
                        }
                    }
                }
                let mixed = route
                    .backends
                    .iter()
                    .any(|b| !matches!(b.kind, BackendKind::Host(_)))
                    && route.backends.len() > 1
                    && route
                        .backends
                        .iter()
                        .any(|b| matches!(b.kind, BackendKind::Host(_)));
                if mixed {
                    return Err(err(
                        format!("{at}.backends"),
                        "host backends cannot be mixed with mcp or ai backends".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_has_position_path_and_suggestion() {
        let e = parse(
            "gw.yaml",
            "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - name: a\n      backendz: [{host: 'x:1'}]\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(6), Some(7)));
        assert_eq!(e.path, "binds[0].listeners[0].routes[0].backendz");
        assert!(e.message.contains("did you mean `backends`?"), "{e}");
        assert!(
            e.to_string().starts_with(
                "gw.yaml:6:7: binds[0].listeners[0].routes[0].backendz: unknown field"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_located() {
        let e = parse("c.yaml", "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends:\n      - host: nowhere\n").unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("'nowhere' must be host:port"), "{e}");
        let e = parse("c.yaml", "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - matches: [{path: {regex: '(['}}]\n      backends: [{host: 'a:1'}]\n").unwrap_err();
        assert!(e.message.contains("invalid regex"), "{e}");
        let routes =
            "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends: [{host: 'a:1'}]\n";
        for (setting, path, needle) in [
            (
                "maxHeaderBytes: 100",
                "config.maxHeaderBytes",
                "use 8192 (8 KiB) to",
            ),
            (
                "headerReadTimeout: 0ms",
                "config.headerReadTimeout",
                "must be longer than 0",
            ),
            (
                "idleTimeout: 0s",
                "config.idleTimeout",
                "must be longer than 0",
            ),
        ] {
            let e = parse("c.yaml", &format!("config:\n  {setting}\n{routes}")).unwrap_err();
            assert_eq!((e.line, e.path.as_str()), (Some(2), path), "{e}");
            assert!(e.message.contains(needle), "{e}");
        }
        let ok = parse(
            "c.yaml",
            &format!("config:\n  maxHeaderBytes: 8192\n  headerReadTimeout: 1s\n{routes}"),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn bad_cors_entries_are_located() {
        let route = |cors: &str| {
            format!(
                "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - policies:\n        cors:\n{cors}      backends: [{{host: 'a:1'}}]\n"
            )
        };
        let at = "binds[0].listeners[0].routes[0].policies.cors";
        for (cors, path, needle) in [
            (
                "          allowOrigins: [https://ok.example.com, example.com]\n",
                "allowOrigins[1]",
                "'example.com' is not an origin: write scheme://host[:port]",
            ),
            (
                "          allowOrigins: ['https://app.example.com/']\n",
                "allowOrigins[0]",
                "is not an origin",
            ),
            (
                "          allowOrigins: ['null']\n",
                "allowOrigins[0]",
                "'null' is not an origin",
            ),
            (
                "          allowOrigins: ['ftp://files.example.com']\n",
                "allowOrigins[0]",
                "with http or https",
            ),
            (
                "          allowOrigins: ['*']\n          allowHeaders: [content-type, 'x bad']\n",
                "allowHeaders[1]",
                "'x bad' is not a header name",
            ),
            (
                "          allowOrigins: ['*']\n          allowMethods: ['GE T']\n",
                "allowMethods[0]",
                "'GE T' is not an HTTP method",
            ),
            (
                "          allowOrigins: ['*']\n          maxAge: 10 minutes\n",
                "maxAge",
                "invalid duration",
            ),
            (
                "          allowOrigin: ['*']\n",
                "allowOrigin",
                "did you mean `allowOrigins`?",
            ),
        ] {
            let e = parse("c.yaml", &route(cors)).unwrap_err();
            let line = 6 + cors.lines().count() as u64;
            assert_eq!(e.path, format!("{at}.{path}"), "{e}");
            assert_eq!(e.line, Some(line), "{e}");
            assert!(e.message.contains(needle), "{e}");
        }
        let ok = parse(
            "c.yaml",
            &route(
                "          allowOrigins: ['https://*.example.com', 'http://localhost:6274', 'http://[::1]:8080']\n          allowHeaders: ['*']\n          allowMethods: [GET, POST, DELETE]\n          maxAge: 1h\n",
            ),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn env_substitution() {
        // No environment sets this name.
        let name = "WARDGATE_TEST_UPSTREAM_PORT";
        assert!(
            substitute_env("f", &format!("host: a:${{{name}}}"))
                .unwrap_err()
                .message
                .contains("WARDGATE_TEST_UPSTREAM_PORT is not set")
        );
        assert_eq!(
            substitute_env("f", "literal: $${HOME}").unwrap(),
            "literal: ${HOME}"
        );
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            substitute_env("f", "h: ${HOME}\n").unwrap(),
            format!("h: {home}\n")
        );
    }

    #[test]
    fn whole_config_checks() {
        let e = parse(
            "c.yaml",
            "binds:\n- port: 1\n  listeners: []\n- port: 1\n  listeners: []\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "binds[1].port");
        let e = parse(
            "c.yaml",
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - name: empty\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("binds[0].listeners[0].routes[0].backends: a route needs"),
            "{e}"
        );
    }
}
