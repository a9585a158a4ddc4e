//! `wardgate plugin new`: a plugin crate on `wardgate-sdk` that builds and
//! passes its own tests as generated. It denies requests that mention a
//! configured word, in the hooks asked for, so an author starts from a
//! working policy and a test that shows how to write more.

use std::path::{Path, PathBuf};

/// Which hooks the new plugin implements.
#[derive(Debug, Clone, Copy, Default)]
pub struct HookSet {
    pub http: bool,
    pub llm: bool,
    pub mcp: bool,
}

impl HookSet {
    pub fn parse(list: &str) -> Result<HookSet, String> {
        let mut set = HookSet::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "http" => set.http = true,
                "llm" => set.llm = true,
                "mcp" => set.mcp = true,
                other => {
                    return Err(format!(
                        "unknown hook family '{other}' (use http, llm, mcp)"
                    ));
                }
            }
        }
        if !(set.http || set.llm || set.mcp) {
            return Err("--hooks needs at least one of http, llm, mcp".into());
        }
        Ok(set)
    }
}

/// Where this binary's SDK lives, when it runs from a checkout.
fn sdk_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    dir.join("Cargo.toml")
        .exists()
        .then(|| dir.canonicalize().ok())
        .flatten()
}

pub fn create(dir: &Path, hooks: HookSet) -> Result<(), String> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("'{}' has no usable file name", dir.display()))?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !valid {
        return Err(format!(
            "'{name}' is not a valid crate name (letters, digits, - and _, starting with a letter)"
        ));
    }
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    let sdk = match sdk_dir() {
        Some(path) => format!("{{ path = \"{}\" }}", path.display()),
        None => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    };
    std::fs::create_dir_all(dir.join("src"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |rel: &str, text: String| {
        std::fs::write(dir.join(rel), text).map_err(|e| format!("cannot write {rel}: {e}"))
    };
    write("Cargo.toml", cargo_toml(name, &sdk))?;
    write("src/lib.rs", lib_rs(hooks))?;
    write("README.md", readme(name))?;
    write("samples.json", samples(hooks))?;
    write(".gitignore", "/target\n".into())?;
    // Start from the gateway's own lock file when there is one: the same
    // dependency versions, so a shared target folder needs no rebuild.
    if let Some(lock) = sdk_dir().map(|s| s.join("../Cargo.lock")) {
        let _ = std::fs::copy(lock, dir.join("Cargo.lock"));
    }
    Ok(())
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
wardgate-sdk = {sdk}
serde = {{ version = "1", features = ["derive"] }}

# `wardgate plugin build` builds with this profile: small, fast code.
[profile.plugin]
inherits = "release"
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = "debuginfo"
debug = false

# A crate of its own, even when created inside another workspace.
[workspace]
"#
    )
}

fn lib_rs(hooks: HookSet) -> String {
    let mut flags = Vec::new();
    let mut methods = String::new();
    let mut tests = String::new();
    if hooks.http {
        flags.push("Hooks::HTTP_REQUEST");
        methods.push_str(
            r#"
    fn on_http_request(&self, _: &RequestContext, req: HttpRequest) -> HttpRequestAction {
        let body = req.body.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        match self.blocked(&req.path).or_else(|| self.blocked(&body)) {
            Some(word) => deny(self.status, format!("request mentions '{word}'")),
            None => HttpRequestAction::Continue,
        }
    }
"#,
        );
        tests.push_str(
            r#"
    #[test]
    fn http_request_with_a_blocked_word_is_denied() {
        let p = plugin();
        let req = |body: &str| HttpRequest {
            method: "POST".into(),
            path: "/chat".into(),
            headers: vec![],
            body: Some(body.as_bytes().to_vec()),
        };
        assert!(matches!(p.on_http_request(&testing::context(), req("DROP table")), HttpRequestAction::Deny(d) if d.status == 403));
        assert!(matches!(p.on_http_request(&testing::context(), req("hello")), HttpRequestAction::Continue));
    }
"#,
        );
    }
    if hooks.llm {
        flags.push("Hooks::LLM_REQUEST");
        methods.push_str(
            r#"
    fn on_llm_request(&self, _: &RequestContext, req: LlmRequest) -> LlmRequestAction {
        match req.texts().find_map(|t| self.blocked(t)) {
            Some(word) => deny(self.status, format!("prompt mentions '{word}'")),
            None => LlmRequestAction::Continue,
        }
    }
"#,
        );
        tests.push_str(
            r#"
    #[test]
    fn prompt_with_a_blocked_word_is_denied() {
        let p = plugin();
        let chat = |text: &str| LlmRequest {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            messages: vec![ChatMessage {
                role: Role::User,
                content: vec![ContentPart::Text(text.into())],
                name: None,
                tool_call_id: None,
                tool_calls: vec![],
            }],
            tools: vec![],
            stream: false,
        };
        assert!(matches!(p.on_llm_request(&testing::context(), chat("please drop it")), LlmRequestAction::Deny(_)));
        assert!(matches!(p.on_llm_request(&testing::context(), chat("hello")), LlmRequestAction::Continue));
    }
"#,
        );
    }
    if hooks.mcp {
        flags.push("Hooks::MCP_REQUEST");
        methods.push_str(
            r#"
    fn on_mcp_request(&self, _: &RequestContext, req: McpRequest) -> McpRequestAction {
        let name = req.name.as_deref().unwrap_or("");
        let args = req.arguments.as_deref().unwrap_or("");
        match self.blocked(name).or_else(|| self.blocked(args)) {
            Some(word) => deny::<McpRequestAction>(self.status, format!("tool call mentions '{word}'")),
            None => McpRequestAction::Continue,
        }
    }
"#,
        );
        tests.push_str(
            r#"
    #[test]
    fn tool_call_with_a_blocked_word_is_denied() {
        let p = plugin();
        let call = |name: &str| McpRequest {
            method: "tools/call".into(),
            target: None,
            name: Some(name.into()),
            arguments: Some("{}".into()),
            session: None,
        };
        assert!(matches!(p.on_mcp_request(&testing::context(), call("drop_table")), McpRequestAction::Deny(_)));
        assert!(matches!(p.on_mcp_request(&testing::context(), call("echo")), McpRequestAction::Continue));
    }
"#,
        );
    }
    format!(
        r##"//! A Wardgate policy plugin: deny requests that mention a blocked word.
//!
//! Config: `{{"words": ["drop"], "status": 403}}` (`status` is optional).
use wardgate_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {{
    words: Vec<String>,
    #[serde(default = "forbidden")]
    status: u16,
}}

fn forbidden() -> u16 {{
    403
}}

struct Policy {{
    words: Vec<String>,
    status: u16,
}}

impl Policy {{
    /// The first blocked word `text` contains, ignoring case.
    fn blocked(&self, text: &str) -> Option<&str> {{
        let text = text.to_lowercase();
        self.words.iter().map(String::as_str).find(|w| text.contains(w))
    }}
}}

impl Plugin for Policy {{
    type Config = Config;
    const HOOKS: Hooks = {hooks};

    // Runs once, when a route loads the plugin: validate here, never per request.
    fn configure(c: Config) -> Result<Self, ConfigError> {{
        if let Some(i) = c.words.iter().position(|w| w.is_empty()) {{
            return Err(ConfigError::new(format!("words[{{i}}]"), "must not be empty"));
        }}
        Ok(Policy {{
            words: c.words.iter().map(|w| w.to_lowercase()).collect(),
            status: c.status,
        }})
    }}
{methods}}}

export_plugin!(Policy);

#[cfg(test)]
mod tests {{
    use super::*;
    use wardgate_sdk::testing;

    fn plugin() -> Policy {{
        testing::configure::<Policy>(r#"{{"words": ["drop"]}}"#).unwrap()
    }}

    #[test]
    fn empty_word_is_a_config_error_naming_the_field() {{
        let err = testing::configure::<Policy>(r#"{{"words": ["ok", ""]}}"#).err().unwrap();
        assert_eq!(err.field, "words[1]");
    }}
{tests}}}
"##,
        hooks = flags
            .iter()
            .enumerate()
            .fold(String::new(), |acc, (i, f)| match i {
                0 => f.to_string(),
                _ => format!("{acc}.union({f})"),
            }),
    )
}

/// Sample requests for `wardgate plugin test`, one allowed and one denied
/// per hook family.
fn samples(hooks: HookSet) -> String {
    let mut lines = Vec::new();
    if hooks.http {
        lines.push(r#"  {"http": {"method": "POST", "path": "/chat", "body": "hello"}}"#);
        lines.push(
            r#"  {"http": {"method": "POST", "path": "/chat", "body": "please DROP the table"}}"#,
        );
    }
    if hooks.llm {
        lines.push(
            r#"  {"llm": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}}"#,
        );
        lines.push(r#"  {"llm": {"model": "gpt-4o", "messages": [{"role": "user", "content": "drop it all"}]}}"#);
    }
    if hooks.mcp {
        lines.push(
            r#"  {"mcp": {"method": "tools/call", "name": "echo", "arguments": {"text": "hi"}}}"#,
        );
        lines.push(r#"  {"mcp": {"method": "tools/call", "name": "drop_table", "arguments": {}}}"#);
    }
    format!("[\n{}\n]\n", lines.join(",\n"))
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A Wardgate policy plugin.

```sh
cargo test                                   # the policy's unit tests, natively
wardgate plugin build .                      # -> {name}.wasm, a WebAssembly component
wardgate plugin test {name}.wasm --config '{{"words": ["drop"]}}' --input samples.json   # one decision per sample
wardgate plugin push {name}.wasm oci://localhost:5000/{name}:0.1.0
```

Use it on a route:

```yaml
plugins:
- name: {name}
  source: ./{name}.wasm        # or oci://registry/{name}:0.1.0
  config: {{ words: [drop] }}
```
"#
    )
}
