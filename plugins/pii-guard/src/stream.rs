//! Streamed answers: text is held back by a short tail, so a value split
//! across chunks (providers stream a few characters at a time) is found
//! whole before any of it leaves. The host gives one instance to a stream
//! for its whole life and says when its text ends (`done`), when the rest
//! goes out.

use crate::recognizers::{Entity, Finding};
use crate::{Action, PiiGuard};
use wardgate_sdk::LlmChunk;

/// Bytes held back: longer than any entity but a long URL.
const HOLD: usize = 64;
/// Bytes of sent text kept in front, for context words and word boundaries.
const KEEP: usize = 96;

/// Typical text with a few entities, to warm the regex caches at configure.
pub const WARM_UP: &str = concat!(
    "Hi Bob, your order #4411 ships today. Contact jane.doe@example.com or call ",
    "(415) 555-0132; card ending 4111 1111 1111 1111 was charged $42.10 on 2024-05-01. ",
    "See https://shop.example.com/orders/4411?ref=mail from 10.0.12.7. IBAN DE89 3704 ",
    "0044 0532 0130 00, SSN 536-22-8726. {\"role\": \"user\", \"content\": \"Summarize\"}\n",
);

#[derive(Default)]
pub struct Held {
    /// Sent context (`sent` bytes) followed by text not yet sent.
    text: String,
    sent: usize,
}

impl Held {
    /// What to send for this chunk: the text that became safe, anonymized.
    pub fn next(&mut self, guard: &PiiGuard, chunk: &LlmChunk) -> Result<String, Entity> {
        if chunk.index == 0 {
            *self = Held::default();
        }
        self.text.push_str(&chunk.text);
        if self.text.len() == self.sent {
            if chunk.done {
                *self = Held::default();
            }
            return Ok(String::new());
        }
        let found = guard.findings(&self.text);
        let mut cut = if chunk.done {
            self.text.len()
        } else {
            floor(&self.text, self.text.len().saturating_sub(HOLD))
        };
        // Never cut through a finding: hold all of it.
        while let Some(f) = found.iter().find(|f| f.start < cut && cut < f.end) {
            cut = f.start;
        }
        if cut <= self.sent {
            return Ok(String::new());
        }
        let ready: Vec<Finding> = found
            .into_iter()
            .filter(|f| f.start >= self.sent && f.end <= cut)
            .collect();
        if let Some(f) = ready
            .iter()
            .find(|f| guard.actions[f.entity.index()] == Action::BLOCK)
        {
            return Err(f.entity);
        }
        let out = guard.anonymize(&self.text[..cut], &ready, self.sent);
        if chunk.done {
            *self = Held::default();
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
