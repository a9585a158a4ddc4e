//! Convenience accessors on the typed views the host passes in.

use crate::{ChatMessage, ContentPart, Header, HttpRequest, HttpResponse, LlmRequest};

impl ChatMessage {
    /// The message's text parts, in order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.content.iter().filter_map(|p| match p {
            ContentPart::Text(t) => Some(t.as_str()),
            ContentPart::Other(_) => None,
        })
    }

    /// Apply `f` to every text part, keeping other parts as they are.
    pub fn map_texts(&mut self, mut f: impl FnMut(&str) -> Option<String>) -> bool {
        let mut changed = false;
        for part in &mut self.content {
            if let ContentPart::Text(t) = part
                && let Some(new) = f(t)
            {
                *t = new;
                changed = true;
            }
        }
        changed
    }
}

impl LlmRequest {
    /// Every text part of every message.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.messages.iter().flat_map(|m| m.texts())
    }
}

fn find<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

impl HttpRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}
