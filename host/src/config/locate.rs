//! Where each node of a config file starts, by config path
//! (`binds[0].listeners[0].routes[2].policies.basicAuth`). Parsing errors
//! carry their position from the YAML reader; errors found later, while
//! the gateway is built from the parsed config (an unreadable key file, a
//! bad htpasswd line, a plugin that fails to load), name a config path, and
//! this turns it back into the file's line and column.

use std::collections::HashMap;

use granit_parser::{Event, Parser};

/// A parsed config file's name, text and node positions.
#[derive(Debug, Default)]
pub struct Source {
    pub file: String,
    text: String,
    /// Config path → (line, column), both 1-based; a mapping entry is
    /// placed at its key.
    positions: HashMap<String, (u64, u64)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl Source {
    /// Index `text`; a text the YAML reader refuses gets no positions (its
    /// errors were reported by the parse already).
    pub fn index(file: &str, text: &str) -> Source {
        let mut positions = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else {
                break;
            };
            let at = (span.start.line() as u64, span.start.col() as u64 + 1);
            // The path of the node this event starts, if it starts one.
            let starts_node = matches!(
                event,
                Event::Scalar(..)
                    | Event::SequenceStart(..)
                    | Event::MappingStart(..)
                    | Event::Alias(_)
            );
            let mut node_path = None;
            if starts_node {
                match stack.last_mut() {
                    None => node_path = Some(String::new()),
                    Some(Frame::Map { path, key }) => match key.take() {
                        // A key: remember it; its entry is placed here.
                        None => {
                            if let Event::Scalar(name, ..) = &event {
                                let entry = join(path, name);
                                positions.entry(entry).or_insert(at);
                                *key = Some(name.to_string());
                            }
                            continue;
                        }
                        Some(k) => node_path = Some(join(path, &k)),
                    },
                    Some(Frame::Seq { path, next }) => {
                        let entry = format!("{path}[{next}]");
                        *next += 1;
                        positions.entry(entry.clone()).or_insert(at);
                        node_path = Some(entry);
                    }
                }
            }
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map {
                    path: node_path.unwrap_or_default(),
                    key: None,
                }),
                Event::SequenceStart(..) => stack.push(Frame::Seq {
                    path: node_path.unwrap_or_default(),
                    next: 0,
                }),
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Source {
            file: file.to_string(),
            text: text.to_string(),
            positions,
        }
    }

    /// The position of `path`, or of its nearest ancestor in the file (a
    /// path may name a default the file does not spell out).
    pub fn position(&self, path: &str) -> Option<(u64, u64)> {
        let mut path = path;
        loop {
            if let Some(&at) = self.positions.get(path) {
                return Some(at);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// The lines leading to `line`, numbered, as parse errors show them.
    pub fn snippet(&self, line: u64) -> String {
        super::load::snippet(&self.text, line)
    }
}

fn join(path: &str, key: &str) -> String {
    match path.is_empty() {
        true => key.to_string(),
        false => format!("{path}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
binds:
- port: 3000
  listeners:
  - routes:
    - name: a
      policies: {cors: {allowOrigins: ['*']}}
    - policies:
        basicAuth:
          htpasswd: {file: nope}
      backends: [{host: 'a:1'}, {mcp: {targets: []}}]
";

    #[test]
    fn paths_lead_to_their_keys_and_items() {
        let s = Source::index("c.yaml", TEXT);
        let at = "binds[0].listeners[0].routes";
        for (path, expected) in [
            ("binds", (1, 1)),
            ("binds[0]", (2, 3)),
            ("binds[0].port", (2, 3)),
            (&format!("{at}[0].name") as &str, (5, 7)),
            (&format!("{at}[0].policies.cors.allowOrigins[0]"), (6, 40)),
            (&format!("{at}[1]"), (7, 7)),
            (&format!("{at}[1].policies.basicAuth"), (8, 9)),
            (
                &format!("{at}[1].policies.basicAuth.htpasswd.file"),
                (9, 22),
            ),
            (&format!("{at}[1].backends[1].mcp"), (10, 34)),
            // Not in the file: its nearest ancestor that is.
            (&format!("{at}[1].policies.basicAuth.realm"), (8, 9)),
            (&format!("{at}[1].plugins[0]"), (7, 7)),
        ] {
            assert_eq!(s.position(path), Some(expected), "{path}");
        }
        assert_eq!(s.position("config.adminAddr"), None);
    }

    #[test]
    fn an_empty_file_has_no_positions() {
        assert_eq!(Source::index("c.yaml", "").position("binds[0]"), None);
    }
}
