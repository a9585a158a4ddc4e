//! Presidio's pattern recognizers, without its NLP model: one regex per
//! entity, Presidio's base scores, its validators (a checksum that passes
//! makes the finding certain, one that fails drops it) and its context
//! rule (a listed word among the five before a match adds 0.35, floor 0.4).

use std::sync::Mutex;

use regex_automata::meta::{Cache, Regex};
use regex_automata::{Input, PatternSet};
use serde::Deserialize;

use crate::checksums;

/// The entity types, under Presidio's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[allow(non_camel_case_types)]
pub enum Entity {
    EMAIL_ADDRESS,
    PHONE_NUMBER,
    CREDIT_CARD,
    US_SSN,
    IBAN_CODE,
    IP_ADDRESS,
    URL,
    CRYPTO,
    US_BANK_NUMBER,
    PERSON,
}

impl Entity {
    pub const ALL: [Entity; 10] = [
        Entity::EMAIL_ADDRESS,
        Entity::PHONE_NUMBER,
        Entity::CREDIT_CARD,
        Entity::US_SSN,
        Entity::IBAN_CODE,
        Entity::IP_ADDRESS,
        Entity::URL,
        Entity::CRYPTO,
        Entity::US_BANK_NUMBER,
        Entity::PERSON,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Entity::EMAIL_ADDRESS => "EMAIL_ADDRESS",
            Entity::PHONE_NUMBER => "PHONE_NUMBER",
            Entity::CREDIT_CARD => "CREDIT_CARD",
            Entity::US_SSN => "US_SSN",
            Entity::IBAN_CODE => "IBAN_CODE",
            Entity::IP_ADDRESS => "IP_ADDRESS",
            Entity::URL => "URL",
            Entity::CRYPTO => "CRYPTO",
            Entity::US_BANK_NUMBER => "US_BANK_NUMBER",
            Entity::PERSON => "PERSON",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Presidio's context words for the entity's recognizer.
    fn context(self) -> &'static [&'static str] {
        match self {
            Entity::EMAIL_ADDRESS => &["email", "mail", "e-mail"],
            Entity::PHONE_NUMBER => &[
                "phone",
                "number",
                "telephone",
                "tel",
                "cell",
                "cellphone",
                "mobile",
                "call",
            ],
            Entity::CREDIT_CARD => &[
                "credit",
                "card",
                "visa",
                "mastercard",
                "cc",
                "amex",
                "discover",
                "jcb",
                "diners",
                "maestro",
                "instapayment",
            ],
            Entity::US_SSN => &["social", "security", "ssn", "ssns", "ssid"],
            Entity::IBAN_CODE => &["iban", "bank", "transaction"],
            Entity::IP_ADDRESS => &["ip", "ipv4", "ipv6", "address"],
            Entity::URL => &["url", "website", "link", "site"],
            Entity::CRYPTO => &["wallet", "btc", "bitcoin", "crypto"],
            Entity::US_BANK_NUMBER => &[
                "check", "checking", "account", "account#", "acct", "bank", "save", "savings",
                "debit",
            ],
            Entity::PERSON => &[],
        }
    }
}

/// One detected span of `text`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    pub entity: Entity,
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

/// What a pattern match turns into once validated.
enum Check {
    /// Keep with this base score.
    Score(f32),
    /// Keep with this span (trimmed) and score.
    Span(usize, usize, f32),
    Drop,
}

struct Recognizer {
    entity: Entity,
    regex: Regex,
}

/// Every enabled recognizer, compiled once at configure time.
pub struct Analyzer {
    recognizers: Vec<Recognizer>,
    /// PERSON is on (names may be any text): [`may_match`] cannot rule it out.
    names: bool,
    /// Every recognizer's pattern as one automaton: a cheap first pass
    /// that says which recognizers can match a stretch at all.
    set: Regex,
    /// Search state, reused so a scan allocates nothing per line. One
    /// instance serves one request at a time, so the lock is never contended.
    scratch: Mutex<Scratch>,
}

struct Scratch {
    set: Cache,
    hits: PatternSet,
    each: Vec<Cache>,
}

const CONTEXT_BOOST: f32 = 0.35;
const CONTEXT_FLOOR: f32 = 0.4;
const CONTEXT_WORDS: usize = 5;
/// Presidio's spaCy PERSON score; names here come from a configured list.
const PERSON_SCORE: f32 = 0.85;
/// The first pass runs on segments of about this size; a recognizer runs
/// only where its pattern can match (plus a margin for spans at the edge).
const SEGMENT: usize = 4096;
/// Lines are grouped into stretches of about this many bytes.
const STRETCH: usize = 64;
const MARGIN: usize = 96;

fn pattern(entity: Entity, names: &[String]) -> Option<String> {
    const B: &str = r"(?-u:\b)";
    Some(match entity {
        Entity::EMAIL_ADDRESS => format!(
            r"{B}[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?)*\.[A-Za-z]{{2,24}}{B}"
        ),
        // International (+CC …) or North American ((555) 123-4567, 555-123-4567).
        Entity::PHONE_NUMBER => format!(
            r"\+[1-9][0-9]{{0,2}}[ .-]?(?:\([0-9]{{1,4}}\)[ .-]?)?[0-9]{{1,4}}(?:[ .-]?[0-9]{{2,4}}){{1,4}}{B}|(?:\([2-9][0-9]{{2}}\) ?|{B}[2-9][0-9]{{2}}[-. ])[0-9]{{3}}[-. ][0-9]{{4}}{B}"
        ),
        Entity::CREDIT_CARD => {
            format!(r"{B}[13456][0-9]{{3}}[- ]?[0-9]{{3,4}}[- ]?[0-9]{{3,4}}[- ]?[0-9]{{3,5}}{B}")
        }
        Entity::US_SSN => format!(
            r"{B}(?:[0-9]{{3}}[- .]?[0-9]{{2}}[- .]?[0-9]{{4}}|[0-9]{{5}}-[0-9]{{4}}|[0-9]{{3}}-[0-9]{{6}}){B}"
        ),
        Entity::IBAN_CODE => format!(r"{B}[A-Z]{{2}}[0-9]{{2}}(?:[ -]?[A-Z0-9]){{11,32}}{B}"),
        Entity::IP_ADDRESS => format!(
            r"{B}(?:[0-9]{{1,3}}\.){{3}}[0-9]{{1,3}}{B}|(?:{B}[0-9A-Fa-f]{{1,4}})?(?::[0-9A-Fa-f]{{0,4}}){{2,7}}(?:\.[0-9]{{1,3}}){{0,3}}"
        ),
        Entity::URL => format!(
            r#"(?:https?://|{B}www\.)[^\s<>"'`]+|{B}(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+[A-Za-z]{{2,24}}{B}(?:/[^\s<>"'`]*)?"#
        ),
        Entity::CRYPTO => {
            format!(r"{B}(?:bc1[ac-hj-np-z02-9]{{11,71}}|[13][a-km-zA-HJ-NP-Z1-9]{{25,34}}){B}")
        }
        Entity::US_BANK_NUMBER => format!(r"{B}[0-9]{{8,17}}{B}"),
        Entity::PERSON => {
            if names.is_empty() {
                return None;
            }
            let alternatives: Vec<String> = names.iter().map(|n| regex::escape(n)).collect();
            format!(r"(?i)\b(?:{})\b", alternatives.join("|"))
        }
    })
}

impl Analyzer {
    /// `entities` enabled; `names` feeds PERSON.
    pub fn new(entities: &[Entity], names: &[String]) -> Result<Self, String> {
        let mut recognizers = Vec::new();
        let mut patterns = Vec::new();
        for &entity in entities {
            if let Some(p) = pattern(entity, names) {
                let regex = Regex::new(&p).map_err(|e| format!("{}: {e}", entity.name()))?;
                recognizers.push(Recognizer { entity, regex });
                patterns.push(p);
            }
        }
        // Every pattern that matches anywhere, as a regex set does.
        let set = Regex::builder()
            .configure(Regex::config().match_kind(regex_automata::MatchKind::All))
            .build_many(&patterns)
            .map_err(|e| e.to_string())?;
        let scratch = Mutex::new(Scratch {
            set: set.create_cache(),
            hits: PatternSet::new(set.pattern_len()),
            each: recognizers.iter().map(|r| r.regex.create_cache()).collect(),
        });
        Ok(Analyzer {
            names: recognizers.iter().any(|r| r.entity == Entity::PERSON),
            recognizers,
            set,
            scratch,
        })
    }

    /// False only if no recognizer can find anything in `text`.
    pub fn may_match(&self, text: &str) -> bool {
        !self.recognizers.is_empty() && (self.names || may_match(text.as_bytes()))
    }

    /// Whether [`Analyzer::may_match`] can rule nothing out (PERSON is on).
    pub fn needs_every_text(&self) -> bool {
        self.names
    }

    /// Every finding in `text` (overlaps included), scored.
    ///
    /// The set of all patterns runs first over short stretches of whole
    /// lines (no entity spans a line break); each recognizer then searches
    /// only the stretches its pattern can match. Dense text pays one pass
    /// plus a little, not one pass per entity.
    pub fn analyze(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        if !self.may_match(text) {
            return out;
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = &mut *scratch;
        let bytes = text.as_bytes();
        let mut lo = 0;
        let mut long_lines = false;
        while lo < text.len() {
            // Whole lines up to about STRETCH bytes.
            let mut hi = lo;
            while hi < text.len() && hi - lo < STRETCH {
                hi = match memchr::memchr(b'\n', &bytes[hi..]) {
                    Some(i) => hi + i + 1,
                    None => text.len(),
                };
            }
            if hi - lo <= SEGMENT {
                self.search(scratch, text, lo, hi, &mut out);
            } else {
                // One long line: chunks with margins, whose overlaps may
                // find a span twice.
                long_lines = true;
                let mut start = lo;
                while start < hi {
                    let end = floor_boundary(text, (start + SEGMENT).min(hi));
                    let end = if end <= start { hi } else { end };
                    let (a, b) = (
                        range_start(text, start).max(lo),
                        range_end(text, end).min(hi),
                    );
                    self.search(scratch, text, a, b, &mut out);
                    start = end;
                }
            }
            lo = hi;
        }
        if long_lines {
            out.sort_by_key(|f| (f.entity, f.start, f.end));
            out.dedup_by_key(|f| (f.entity, f.start, f.end));
        }
        out
    }

    fn search(
        &self,
        scratch: &mut Scratch,
        text: &str,
        lo: usize,
        hi: usize,
        out: &mut Vec<Finding>,
    ) {
        scratch.hits.clear();
        let input = Input::new(text).range(lo..hi);
        self.set
            .which_overlapping_matches_with(&mut scratch.set, &input, &mut scratch.hits);
        for id in scratch.hits.iter() {
            let i = id.as_usize();
            self.run(
                &self.recognizers[i],
                &mut scratch.each[i],
                text,
                lo,
                hi,
                out,
            );
        }
    }

    fn run(
        &self,
        r: &Recognizer,
        cache: &mut Cache,
        text: &str,
        lo: usize,
        hi: usize,
        out: &mut Vec<Finding>,
    ) {
        let mut input = Input::new(text).range(lo..hi);
        while let Some(m) = r.regex.search_with(cache, &input) {
            let (s, e) = (m.start(), m.end());
            // Matches are never empty, so this always moves on.
            input.set_start(e.max(s + 1));
            if r.entity == Entity::CREDIT_CARD && inside_longer_groups(text, s, e) {
                continue;
            }
            let (start, end, mut score) = match check(r.entity, &text[s..e]) {
                Check::Drop => continue,
                Check::Score(score) => (s, e, score),
                Check::Span(a, b, score) => (s + a, s + b, score),
            };
            if score < 1.0 && has_context(text, start, r.entity.context()) {
                score = (score + CONTEXT_BOOST).clamp(CONTEXT_FLOOR, 1.0);
            }
            out.push(Finding {
                entity: r.entity,
                start,
                end,
                score,
            });
        }
    }
}

/// Whether `text` has something that every pattern but PERSON's needs to
/// match: an `@` (email), a `+` (international phone), eight digits (card,
/// SSN, bank number, North American phone), two colons (IPv6), `://` or
/// `www.` (URL), a dot before a letter or digit (host name, IPv4), two
/// capitals before two digits (IBAN), or 14 letters and digits in a row
/// (Bitcoin). Most strings in tool calls and answers have none; for them
/// one pass over the bytes replaces the automata, whose code and caches
/// are cold between requests.
fn may_match(text: &[u8]) -> bool {
    let (mut digits, mut colons, mut run) = (0, 0, 0);
    for (i, &b) in text.iter().enumerate() {
        let next = text.get(i + 1).copied().unwrap_or(b' ');
        match b {
            b'@' | b'+' => return true,
            b'0'..=b'9' => digits += 1,
            b':' => colons += 1,
            b'.' if next.is_ascii_alphanumeric() => return true,
            _ => {}
        }
        if b.is_ascii_alphanumeric() {
            run += 1;
        } else {
            run = 0;
        }
        if digits >= 8 || colons >= 2 || run >= 14 {
            return true;
        }
        if b.is_ascii_digit()
            && i >= 3
            && text[i - 1].is_ascii_digit()
            && text[i - 2].is_ascii_uppercase()
            && text[i - 3].is_ascii_uppercase()
        {
            return true;
        }
        if text[i..].starts_with(b"://") || text[i..].starts_with(b"www.") {
            return true;
        }
    }
    false
}

/// Presidio's validate/invalidate step for one match.
fn check(entity: Entity, m: &str) -> Check {
    match entity {
        Entity::EMAIL_ADDRESS => {
            let tld = m.rsplit('.').next().unwrap_or("");
            if checksums::known_tld(tld) {
                Check::Score(1.0)
            } else {
                Check::Drop
            }
        }
        Entity::PHONE_NUMBER => {
            let digits = m.bytes().filter(u8::is_ascii_digit).count();
            if (7..=15).contains(&digits) {
                Check::Score(0.4)
            } else {
                Check::Drop
            }
        }
        Entity::CREDIT_CARD => {
            let digits: String = m.chars().filter(char::is_ascii_digit).collect();
            // Presidio's pattern leaves out 13-digit numbers starting with 1.
            if digits.len() == 13 && digits.starts_with('1') {
                return Check::Drop;
            }
            if (13..=19).contains(&digits.len()) && checksums::luhn(&digits) {
                Check::Score(1.0)
            } else {
                Check::Drop
            }
        }
        Entity::US_SSN => {
            if checksums::ssn_is_invalid(m) {
                return Check::Drop;
            }
            let b = m.as_bytes();
            // ddd-dd-dddd with one kind of separator is "medium"; the rest "very weak".
            let medium = b.len() == 11 && !b[3].is_ascii_digit() && b[3] == b[6];
            Check::Score(if medium { 0.5 } else { 0.05 })
        }
        Entity::IBAN_CODE => iban(m),
        Entity::IP_ADDRESS => {
            let candidate = m.trim_matches(':');
            let candidate = if m.starts_with("::") || m.ends_with("::") {
                m
            } else {
                candidate
            };
            if candidate.contains(':') {
                let ok = candidate.bytes().any(|b| b.is_ascii_hexdigit())
                    && candidate.parse::<std::net::Ipv6Addr>().is_ok();
                let at = m.find(candidate).unwrap_or(0);
                if ok {
                    Check::Span(at, at + candidate.len(), 0.6)
                } else {
                    Check::Drop
                }
            } else if candidate.parse::<std::net::Ipv4Addr>().is_ok() {
                Check::Score(0.6)
            } else {
                Check::Drop
            }
        }
        Entity::URL => {
            let trimmed = m.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}']);
            let schemed = trimmed.starts_with("http") || trimmed.starts_with("www.");
            if !schemed {
                let host = trimmed.split('/').next().unwrap_or("");
                let tld = host.rsplit('.').next().unwrap_or("");
                // A bare host needs a known TLD, and file names (main.rs,
                // setup.py) are not hosts though .rs and .py are TLDs.
                if !checksums::known_tld(tld) || checksums::file_extension(tld) {
                    return Check::Drop;
                }
            }
            Check::Span(0, trimmed.len(), if schemed { 0.6 } else { 0.5 })
        }
        Entity::CRYPTO => {
            if checksums::bitcoin_address(m) {
                Check::Score(1.0)
            } else {
                Check::Drop
            }
        }
        Entity::US_BANK_NUMBER => Check::Score(0.05),
        Entity::PERSON => Check::Score(PERSON_SCORE),
    }
}

/// An IBAN candidate runs on while groups follow; the country's length
/// says where it ends. Valid mod 97 → certain, else dropped.
fn iban(m: &str) -> Check {
    let Some(len) = checksums::iban_length(&m[..2]) else {
        return Check::Drop;
    };
    let mut compact = String::with_capacity(len);
    let mut end = 0;
    for (i, c) in m.char_indices() {
        if c.is_ascii_alphanumeric() {
            compact.push(c);
            if compact.len() == len {
                end = i + 1;
                break;
            }
        }
    }
    // The IBAN must end where a group ends, not inside a longer run.
    let clean_end = end == m.len()
        || m[end..]
            .chars()
            .next()
            .is_some_and(|c| c == ' ' || c == '-');
    if compact.len() == len && clean_end && checksums::iban_checksum(&compact) {
        Check::Span(0, end, 1.0)
    } else {
        Check::Drop
    }
}

/// A grouped number that is only part of a longer one (an IBAN, an
/// account in groups of four): a digit group right before or after it.
fn inside_longer_groups(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let grouped = |sep: u8| sep == b' ' || sep == b'-';
    (start >= 2 && grouped(b[start - 1]) && b[start - 2].is_ascii_alphanumeric())
        && b[start - 2].is_ascii_digit()
        || (end + 1 < b.len() && grouped(b[end]) && b[end + 1].is_ascii_digit())
}

/// Whether one of `words` is among the five words before `start`.
fn has_context(text: &str, start: usize, words: &[&str]) -> bool {
    if words.is_empty() {
        return false;
    }
    let from = floor_boundary(text, start.saturating_sub(80));
    text[from..start]
        .split(|c: char| !(c.is_alphanumeric() || c == '#' || c == '-'))
        .filter(|w| !w.is_empty())
        .rev()
        .take(CONTEXT_WORDS)
        .any(|w| {
            let w = w.trim_matches('-');
            let singular = w.strip_suffix(['s', 'S']).unwrap_or(w);
            words
                .iter()
                .any(|c| c.eq_ignore_ascii_case(w) || c.eq_ignore_ascii_case(singular))
        })
}

/// Where a range searched for matches near `at` begins: after a line
/// break or a clause's end, so no entity starts before it, else a margin back.
fn range_start(text: &str, at: usize) -> usize {
    let from = floor_boundary(text, at.saturating_sub(1024));
    let window = &text.as_bytes()[from..at];
    let safe = window.iter().rposition(|&b| b == b'\n').or_else(|| {
        window
            .windows(2)
            .rposition(|w| b",;!?\"'(){}[]".contains(&w[0]) && w[1].is_ascii_whitespace())
            .map(|i| i + 1)
    });
    match safe {
        Some(i) => from + i + 1,
        None => floor_boundary(text, at.saturating_sub(MARGIN)),
    }
}

/// Where it ends: at the next whitespace past `at`, so a long span (a URL)
/// is not cut, within a bound.
fn range_end(text: &str, at: usize) -> usize {
    let to = ceil_boundary(text, (at + 1024).min(text.len()));
    match text.as_bytes()[at..to]
        .iter()
        .position(u8::is_ascii_whitespace)
    {
        Some(i) => at + i,
        None => ceil_boundary(text, (at + MARGIN).min(text.len())),
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Entity, String, f32)> {
        let a = Analyzer::new(&Entity::ALL, &["Alice Smith".to_string()]).unwrap();
        let mut f: Vec<_> = a
            .analyze(text)
            .into_iter()
            .map(|f| (f.entity, text[f.start..f.end].to_string(), f.score))
            .collect();
        f.sort_by(|a, b| a.1.cmp(&b.1));
        f
    }

    fn has(text: &str, entity: Entity, span: &str) -> f32 {
        found(text)
            .into_iter()
            .find(|(e, s, _)| *e == entity && s == span)
            .map(|(_, _, score)| score)
            .unwrap_or_else(|| panic!("{entity:?} {span:?} not found in {:?}", found(text)))
    }

    #[test]
    fn scores_follow_presidio() {
        assert_eq!(
            has(
                "mail bob@example.com now",
                Entity::EMAIL_ADDRESS,
                "bob@example.com"
            ),
            1.0
        );
        assert_eq!(
            has(
                "card 4111 1111 1111 1111.",
                Entity::CREDIT_CARD,
                "4111 1111 1111 1111"
            ),
            1.0
        );
        assert_eq!(
            has("id 536-22-8726 here", Entity::US_SSN, "536-22-8726"),
            0.5
        );
        assert!((has("my ssn is 536228726", Entity::US_SSN, "536228726") - 0.4).abs() < 1e-6);
        assert!((has("x 536228726", Entity::US_SSN, "536228726") - 0.05).abs() < 1e-6);
        assert_eq!(
            has(
                "call (415) 555-0132",
                Entity::PHONE_NUMBER,
                "(415) 555-0132"
            ),
            0.75
        );
        assert_eq!(
            has(
                "reach +44 20 7946 0958",
                Entity::PHONE_NUMBER,
                "+44 20 7946 0958"
            ),
            0.4
        );
        assert_eq!(
            has(
                "pay DE89 3704 0044 0532 0130 00 today",
                Entity::IBAN_CODE,
                "DE89 3704 0044 0532 0130 00"
            ),
            1.0
        );
        assert_eq!(has("host 10.0.12.7.", Entity::IP_ADDRESS, "10.0.12.7"), 0.6);
        assert_eq!(
            has(
                "v6 2001:db8::8a2e:370:7334 up",
                Entity::IP_ADDRESS,
                "2001:db8::8a2e:370:7334"
            ),
            0.6
        );
        assert_eq!(
            has(
                "see https://example.org/a?b=1.",
                Entity::URL,
                "https://example.org/a?b=1"
            ),
            0.6
        );
        assert_eq!(
            has(
                "btc 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
                Entity::CRYPTO,
                "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"
            ),
            1.0
        );
        assert!(
            (has("account 12345678901", Entity::US_BANK_NUMBER, "12345678901") - 0.4).abs() < 1e-6
        );
        assert_eq!(
            has("ask alice smith", Entity::PERSON, "alice smith"),
            PERSON_SCORE
        );
    }

    /// The shortcut may only skip texts where no recognizer finds anything:
    /// the corpus's samples and a sweep of short strings built from the
    /// characters the patterns use, each analyzed in full.
    #[test]
    fn the_shortcut_skips_only_texts_without_findings() {
        let mut every = Entity::ALL.to_vec();
        every.retain(|e| *e != Entity::PERSON);
        let a = Analyzer::new(&every, &[]).unwrap();
        let full = |text: &str| {
            let mut out = Vec::new();
            a.search(
                &mut a.scratch.lock().unwrap(),
                text,
                0,
                text.len(),
                &mut out,
            );
            out
        };
        let corpus = include_str!("../../../tests/fixtures/pii/corpus.jsonl");
        let mut texts: Vec<String> = corpus
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["text"].as_str().unwrap().to_string()
            })
            .collect();
        // Deterministic pseudo-random strings of 1-24 characters.
        let alphabet = b"0123456789ABZabcwz.:@+-/ ()#";
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            let len = 1 + (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                .collect();
            texts.push(text);
        }
        let (mut skipped, mut found) = (0, 0);
        for text in &texts {
            let hits = full(text);
            found += usize::from(!hits.is_empty());
            if !may_match(text.as_bytes()) {
                skipped += 1;
                assert!(hits.is_empty(), "skipped {text:?}, which holds {hits:?}");
            }
        }
        // Both sides were exercised.
        assert!(
            skipped > 10_000 && found > 1_000,
            "skipped {skipped}, found {found}"
        );
        assert!(!may_match(b"The sum of 2 and 3 is 5."));
    }

    #[test]
    fn failed_checksums_and_lookalikes_are_dropped() {
        let text = "card 4111 1111 1111 1112, iban DE89 3704 0044 0532 0130 01, \
                    ssn 000-12-3456, ip 999.1.1.1, btc 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3, \
                    date 2024-05-01, time 12:30:45, file notes.txt";
        let f = found(text);
        for e in [
            Entity::CREDIT_CARD,
            Entity::IBAN_CODE,
            Entity::US_SSN,
            Entity::IP_ADDRESS,
            Entity::CRYPTO,
            Entity::URL,
            Entity::PHONE_NUMBER,
        ] {
            assert!(f.iter().all(|(x, _, _)| *x != e), "{e:?} in {f:?}");
        }
    }

    #[test]
    fn long_texts_find_the_same_as_short_ones() {
        let unit = "Lorem ipsum dolor sit amet, bob@example.com consectetur 4111-1111-1111-1111 adipiscing.\n";
        let text = unit.repeat(200);
        let a = Analyzer::new(&Entity::ALL, &[]).unwrap();
        let f = a.analyze(&text);
        let emails = f
            .iter()
            .filter(|x| x.entity == Entity::EMAIL_ADDRESS)
            .count();
        let cards = f.iter().filter(|x| x.entity == Entity::CREDIT_CARD).count();
        assert_eq!((emails, cards), (200, 200));
    }
}
