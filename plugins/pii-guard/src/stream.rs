//! Streamed answers: the SDK's hold-back keeps a short tail so a value
//! split across chunks (providers stream a few characters at a time) is
//! found whole before any of it leaves.

use wardgate_sdk::LlmChunk;
use wardgate_sdk::stream::{HoldBack, Span};

use crate::recognizers::{Entity, Finding};
use crate::{Action, PiiGuard};

/// Typical text with a few entities, to warm the regex caches at configure.
pub const WARM_UP: &str = concat!(
    "Hi Bob, your order #4411 ships today. Contact jane.doe@example.com or call ",
    "(415) 555-0132; card ending 4111 1111 1111 1111 was charged $42.10 on 2024-05-01. ",
    "See https://shop.example.com/orders/4411?ref=mail from 10.0.12.7. IBAN DE89 3704 ",
    "0044 0532 0130 00, SSN 536-22-8726. {\"role\": \"user\", \"content\": \"Summarize\"}\n",
);

impl Span for Finding {
    fn start(&self) -> usize {
        self.start
    }
    fn end(&self) -> usize {
        self.end
    }
}

/// What to send for this chunk, or the entity that blocks the answer.
pub fn next(guard: &PiiGuard, held: &mut HoldBack, chunk: &LlmChunk) -> Result<String, Entity> {
    held.next(
        chunk,
        |text| guard.findings(text),
        |text, ready, from| {
            if let Some(f) = ready
                .iter()
                .find(|f| guard.actions[f.entity.index()] == Action::BLOCK)
            {
                return Err(f.entity);
            }
            Ok(guard.anonymize(text, ready, from))
        },
    )
}
