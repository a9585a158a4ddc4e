//! Rewriting streamed answers. Providers stream a few characters at a
//! time, so a value to mask is usually split across chunks and, once a
//! chunk has left, it cannot be taken back. [`HoldBack`] keeps a short tail
//! of the stream until it is safe: whatever the plugin finds is never cut,
//! and the host says when the text ends (`chunk.done`), when the rest goes.
//!
//! The host gives a stream one plugin instance for its whole life, so the
//! `HoldBack` lives in the plugin (behind a `Mutex`, as plugins are `Sync`).

use crate::LlmChunk;

/// A span of text a plugin found (and will rewrite).
pub trait Span {
    /// Byte offset where the span begins.
    fn start(&self) -> usize;
    /// Byte offset just past its end.
    fn end(&self) -> usize;
}

impl Span for (usize, usize) {
    fn start(&self) -> usize {
        self.0
    }
    fn end(&self) -> usize {
        self.1
    }
}

/// The unsent tail of one stream, with a little sent text in front of it
/// for context (word boundaries, context words).
#[derive(Default)]
pub struct HoldBack {
    text: String,
    sent: usize,
}

/// Bytes held back: longer than any value a plugin masks but a long URL.
pub const HOLD: usize = 64;
/// Bytes of sent text kept in front.
const KEEP: usize = 96;

impl HoldBack {
    /// Text taken from earlier chunks and not sent yet: a check for what
    /// must not be sent at all looks at `lookbehind + unsent + text`, or a
    /// value split across held-back chunks would never be seen whole.
    pub fn unsent(&self) -> &str {
        &self.text[self.sent..]
    }

    /// Take `chunk` and return the text to send for it: what became safe,
    /// as `render(text, spans, from)` writes `text[from..]` with the spans
    /// found by `find` in it (only those wholly inside are passed). An
    /// error from `render` (a value that blocks the answer) is returned.
    pub fn next<S: Span, E>(
        &mut self,
        chunk: &LlmChunk,
        find: impl FnOnce(&str) -> Vec<S>,
        render: impl FnOnce(&str, &[S], usize) -> Result<String, E>,
    ) -> Result<String, E> {
        if chunk.index == 0 {
            *self = HoldBack::default();
        }
        self.text.push_str(&chunk.text);
        if self.text.len() == self.sent {
            if chunk.done {
                *self = HoldBack::default();
            }
            return Ok(String::new());
        }
        let found = find(&self.text);
        let mut cut = if chunk.done {
            self.text.len()
        } else {
            floor(&self.text, self.text.len().saturating_sub(HOLD))
        };
        // Never cut through a finding: hold all of it.
        while let Some(f) = found.iter().find(|f| f.start() < cut && cut < f.end()) {
            cut = f.start();
        }
        if cut <= self.sent {
            return Ok(String::new());
        }
        let ready: Vec<S> = found
            .into_iter()
            .filter(|f| f.start() >= self.sent && f.end() <= cut)
            .collect();
        let out = render(&self.text[..cut], &ready, self.sent)?;
        if chunk.done {
            *self = HoldBack::default();
            return Ok(out);
        }
        let keep_from = floor(&self.text, cut.saturating_sub(KEEP));
        self.text.drain(..keep_from);
        self.sent = cut - keep_from;
        Ok(out)
    }
}

fn floor(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Masks every "secret" in a stream cut into `size`-byte chunks.
    fn run(text: &str, size: usize) -> String {
        let mut hold = HoldBack::default();
        let mut sent = String::new();
        let bytes: Vec<&str> = text
            .as_bytes()
            .chunks(size)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        for (i, piece) in bytes.iter().chain(std::iter::once(&"")).enumerate() {
            let chunk = LlmChunk {
                index: i as u32,
                text: piece.to_string(),
                lookbehind: String::new(),
                usage: None,
                done: i == bytes.len(),
            };
            let out = hold
                .next(
                    &chunk,
                    |t| {
                        t.match_indices("secret")
                            .map(|(i, m)| (i, i + m.len()))
                            .collect::<Vec<_>>()
                    },
                    |t, spans, from| {
                        let mut out = String::new();
                        let mut at = from;
                        for s in spans {
                            out.push_str(&t[at..s.0]);
                            out.push_str("***");
                            at = s.1;
                        }
                        out.push_str(&t[at..]);
                        Ok::<_, ()>(out)
                    },
                )
                .unwrap();
            sent.push_str(&out);
        }
        sent
    }

    #[test]
    fn split_values_are_rewritten_whole_whatever_the_chunk_size() {
        let text = "the secret is out, another secret here and a last secret";
        for size in [1, 2, 5, 13, 100] {
            assert_eq!(
                run(text, size),
                "the *** is out, another *** here and a last ***"
            );
        }
    }
}
