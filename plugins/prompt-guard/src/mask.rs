//! `mask`: matches of regex or literal rules and of built-in sets are
//! replaced (default `<MASKED>`) instead of rejecting the request. On
//! streamed answers the SDK's hold-back keeps a short tail, so a match
//! split across chunks is masked whole.

use regex::Regex;
use serde::Deserialize;

use crate::sets::SetName;

/// One rule: a regex (a bare string, or `{regex: ...}`) or `{literal: ...}`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub enum Rule {
    Regex(String),
    Tagged(Tagged),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub enum Tagged {
    #[serde(rename = "regex")]
    Regex(String),
    #[serde(rename = "literal")]
    Literal(String),
}

impl Rule {
    /// The rule as regex source.
    pub fn source(&self) -> String {
        match self {
            Rule::Regex(r) | Rule::Tagged(Tagged::Regex(r)) => r.clone(),
            Rule::Tagged(Tagged::Literal(l)) => regex::escape(l),
        }
    }
}

/// Compiled mask rules.
pub struct Masker {
    rules: Vec<(Regex, Option<SetName>)>,
    with: String,
}

impl Masker {
    /// `field` names the config list, for errors (`mask[2]`).
    pub fn new(
        field: &str,
        rules: &[Rule],
        sets: &[SetName],
        with: String,
    ) -> Result<Masker, (String, String)> {
        let mut compiled = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let re =
                Regex::new(&r.source()).map_err(|e| (format!("{field}[{i}]"), e.to_string()))?;
            compiled.push((re, None));
        }
        for set in sets {
            for p in set.patterns() {
                compiled.push((Regex::new(p).expect("built-in pattern"), Some(*set)));
            }
        }
        Ok(Masker {
            rules: compiled,
            with,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every span to mask, in order, overlaps merged.
    pub fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (re, set) in &self.rules {
            for m in re.find_iter(text) {
                if !m.is_empty() && set.is_none_or(|s| s.accepts(m.as_str())) {
                    spans.push((m.start(), m.end()));
                }
            }
        }
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s < last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// `text[from..]` with `spans` (all at or after `from`) masked.
    pub fn render(&self, text: &str, spans: &[(usize, usize)], from: usize) -> String {
        let mut out = String::with_capacity(text.len() - from);
        let mut at = from;
        for &(s, e) in spans {
            out.push_str(&text[at..s]);
            out.push_str(&self.with);
            at = e;
        }
        out.push_str(&text[at..]);
        out
    }

    /// `text` masked, or None when nothing matched.
    pub fn apply(&self, text: &str) -> Option<String> {
        if self.rules.is_empty() {
            return None;
        }
        let spans = self.spans(text);
        (!spans.is_empty()).then(|| self.render(text, &spans, 0))
    }

    /// Mask every string in a JSON document; None when nothing changed.
    pub fn apply_json(&self, json: &str) -> Option<String> {
        if self.is_empty() {
            // Nothing to mask: skip parsing what would come back unchanged.
            return None;
        }
        let mut v: serde_json::Value = serde_json::from_str(json).ok()?;
        let changed = wardgate_sdk::text::rewrite_json_strings(&mut v, &mut |s| {
            Ok::<_, std::convert::Infallible>(self.apply(s))
        });
        matches!(changed, Ok(true)).then(|| v.to_string())
    }
}
