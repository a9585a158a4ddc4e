//! "Does any rule match this text?", as fast as a DFA allows.
//!
//! A DFA takes one dependent table load per byte, so one scan is bound by
//! load latency, not by work. Most prompts are ASCII and most guard rules
//! have a longest possible match; for those, the text is cut in two halves
//! overlapping by that length and both halves advance in one loop: two
//! independent chains of loads keep the CPU busy (1.6x natively, measured on
//! 4 KiB against the same rules' lazy DFA).
//!
//! The split scan uses a dense DFA built with ASCII semantics at configure
//! time (so it lands in the snapshot, ready). On ASCII text ASCII semantics
//! match exactly what the Unicode rules match: `\d`, `\w`, `\b`, `\s`, case
//! folding and negated classes differ only on non-ASCII characters. Any
//! other case (non-ASCII text, rules that need Unicode or have no longest
//! match, a DFA of more than [`MAX_STATES`] states) uses the rules' `RegexSet`.

use regex::RegexSet;
use regex_automata::Input;
use std::collections::HashMap;

use regex_automata::dfa::{Automaton, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;

/// Bounds on building it (before minimizing), so a rule list that would
/// explode only costs a bounded amount of configure time.
const BUILD_LIMIT: usize = 2 << 20;

/// DFAs up to this many states are minimized (~0.1 s natively at the
/// limit); larger ones are left to the `RegexSet`.
const MAX_STATES_TO_MINIMIZE: usize = 8192;

/// Texts shorter than this are scanned in one piece.
const SPLIT_MIN: usize = 256;

pub struct Matcher {
    set: RegexSet,
    split: Option<SplitScan>,
}

struct SplitScan {
    table: Table,
    /// The longest match any rule can make, in bytes.
    longest: usize,
}

impl Matcher {
    pub fn new(patterns: &[String]) -> Result<Matcher, regex::Error> {
        let set = RegexSet::new(patterns)?;
        let split = SplitScan::new(patterns);
        Ok(Matcher { set, split })
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn is_match(&self, text: &str) -> bool {
        if let Some(split) = &self.split
            && text.len() >= SPLIT_MIN
            && text.is_ascii()
        {
            return split.is_match(text.as_bytes());
        }
        self.set.is_match(text)
    }

    /// Whether the split scan serves ASCII text (for tests).
    #[cfg(test)]
    fn splits(&self) -> bool {
        self.split.is_some()
    }
}

impl SplitScan {
    fn new(patterns: &[String]) -> Option<SplitScan> {
        if patterns.is_empty() {
            return None;
        }
        let ascii = syntax::Config::new().unicode(false).utf8(false);
        let mut longest = 0;
        for p in patterns {
            let hir = syntax::parse_with(p, &ascii).ok()?;
            longest = longest.max(hir.properties().maximum_len()?);
        }
        // Leftmost-first (the default) rather than all matches: the DFA is
        // 20x smaller, and the first match state seen answers "any match?"
        // either way, since no thread is pruned before some pattern matches.
        let build = |minimize: bool| {
            dense::Builder::new()
                .syntax(ascii)
                .configure(
                    dense::Config::new()
                        .minimize(minimize)
                        .dfa_size_limit(Some(BUILD_LIMIT))
                        .determinize_size_limit(Some(BUILD_LIMIT)),
                )
                .build_many(patterns)
                .ok()
        };
        // Minimizing takes time superlinear in the states (24k states of a
        // card-number rule: 10 s natively), so only small DFAs are.
        let dfa = build(false)?;
        let states = dfa.memory_usage() / (4 * dfa.stride());
        let dfa = if states <= MAX_STATES {
            dfa
        } else if states <= MAX_STATES_TO_MINIMIZE {
            build(true)?
        } else {
            return None;
        };
        Table::of(&dfa).map(|table| SplitScan { table, longest })
    }

    fn is_match(&self, hay: &[u8]) -> bool {
        let t = &self.table;
        let len = hay.len();
        let mid = len / 2;
        if mid <= self.longest {
            return t.finish(hay, t.start[0], 0, len);
        }
        // A match starting before `mid` ends before `a_end`; one starting at
        // or after it lies in the second half. Each half sees its true
        // neighbours (the byte before `mid`, the byte after `a_end`), so
        // look-around such as `\b` judges at the cut as in one piece.
        let a_end = mid + self.longest;
        let (mut a, mut b) = (t.start[0], t.start[1 + hay[mid - 1] as usize]);
        let (first, second) = (&hay[..mid], &hay[mid..mid * 2]);
        for (&x, &y) in first.iter().zip(second) {
            a = t.next(a, x);
            b = t.next(b, y);
            if a >= t.first_match || b >= t.first_match {
                return true;
            }
        }
        t.finish(hay, a, mid, a_end) || t.finish(hay, b, mid * 2, len)
    }
}

/// The DFA as one flat table a scan can walk with a single load per byte
/// (regex-automata's own step adds a byte-class load and checks that cost
/// ~2x in WebAssembly).
struct Table {
    /// `next[state + byte]`; state ids are row offsets (index * 256).
    next: Box<[u32]>,
    /// Ids from here on are match states (a match ended one byte earlier).
    first_match: u32,
    /// Start state at the start of the text, then after each byte value.
    start: Box<[u32; 257]>,
    /// Per state index: whether ending the text there completes a match.
    match_at_end: Box<[bool]>,
}

/// Larger DFAs keep regex-automata's compact form (through the `RegexSet`).
const MAX_STATES: usize = 1024;

impl Table {
    fn of(dfa: &dense::DFA<Vec<u32>>) -> Option<Table> {
        // Start states depend only on the byte before (look-behind).
        let mut starts = Vec::with_capacity(257);
        starts.push(dfa.start_state_forward(&Input::new(b"")).ok()?);
        for byte in 0..=255u8 {
            let hay = [byte];
            starts.push(dfa.start_state_forward(&Input::new(&hay).range(1..)).ok()?);
        }
        // Every state reachable from a start, in discovery order.
        let mut order: Vec<StateID> = Vec::new();
        let mut seen: HashMap<StateID, usize> = HashMap::new();
        let mut visit = |id: StateID, order: &mut Vec<StateID>| {
            seen.entry(id).or_insert_with(|| {
                order.push(id);
                order.len() - 1
            });
        };
        for &s in &starts {
            visit(s, &mut order);
        }
        let mut i = 0;
        while i < order.len() {
            if order.len() > MAX_STATES || dfa.is_quit_state(order[i]) {
                return None;
            }
            for byte in 0..=255u8 {
                visit(dfa.next_state(order[i], byte), &mut order);
            }
            i += 1;
        }
        // Match states last, so "is it a match" is one comparison.
        let (mut plain, matching): (Vec<StateID>, Vec<StateID>) =
            order.into_iter().partition(|&s| !dfa.is_match_state(s));
        let first_match = (plain.len() * 256) as u32;
        plain.extend(matching);
        let row: HashMap<StateID, u32> = plain
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, (i * 256) as u32))
            .collect();
        let mut next = vec![0u32; plain.len() * 256].into_boxed_slice();
        for (i, &s) in plain.iter().enumerate() {
            for byte in 0..=255u8 {
                next[i * 256 + byte as usize] = row[&dfa.next_state(s, byte)];
            }
        }
        let start: Vec<u32> = starts.iter().map(|s| row[s]).collect();
        Some(Table {
            next,
            first_match,
            start: start.into_boxed_slice().try_into().ok()?,
            match_at_end: plain
                .iter()
                .map(|&s| dfa.is_match_state(dfa.next_eoi_state(s)))
                .collect(),
        })
    }

    #[inline(always)]
    fn next(&self, state: u32, byte: u8) -> u32 {
        // SAFETY: `state` is a row offset (index * 256) of a state in
        // `next`, as every entry of `next` and `start` is, so the index is
        // below `next.len()`.
        unsafe { *self.next.get_unchecked(state as usize + byte as usize) }
    }

    /// Run `state` over `hay[from..end]`, then over the byte after `end`
    /// (or the end of the text), since matches show one step late.
    fn finish(&self, hay: &[u8], mut state: u32, from: usize, end: usize) -> bool {
        for &byte in &hay[from..end] {
            state = self.next(state, byte);
            if state >= self.first_match {
                return true;
            }
        }
        match hay.get(end) {
            Some(&after) => self.next(state, after) >= self.first_match,
            None => self.match_at_end[state as usize / 256],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(patterns: &[&str]) -> Matcher {
        Matcher::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// A deterministic mix of words, digits, separators and the rules'
    /// own fragments, so matches fall everywhere, the cut included.
    fn texts() -> Vec<String> {
        let pieces = [
            "the ",
            "Ignore ",
            "previous ",
            "prior ",
            "instructions",
            " ",
            "123",
            "-",
            "45",
            "6789",
            "x",
            "AKIA",
            "ABCDEFGHIJKLMNOP",
            "QRST",
            "begin ",
            "RSA ",
            "private key",
            "PRIVATE KEY",
            ".",
            "\n",
            "you are now ",
            "dan",
            "_",
            "all ",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = Vec::new();
        for len in [0usize, 1, 40, 255, 256, 300, 513, 1024, 4096] {
            for _ in 0..60 {
                let mut text = String::new();
                while text.len() < len {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
                }
                text.truncate(len);
                out.push(text);
            }
        }
        out
    }

    #[test]
    fn agrees_with_the_regex_set_on_ascii_text() {
        let sets: [&[&str]; 4] = [
            &[
                r"(?i)ignore (all )?(previous|prior) instructions",
                r"(?i)you are now (DAN|in developer mode)",
                r"\b\d{3}-\d{2}-\d{4}\b",
                r"(?i)BEGIN (RSA|EC|OPENSSH) PRIVATE KEY",
                r"AKIA[0-9A-Z]{16}",
            ],
            &[r"\bx\b", r"^the", r"key$"],
            &[r"[^a-z ]{5}", r"\W\w{4}\W"],
            &[r"(?i)Private\s+KEY"],
        ];
        for patterns in sets {
            let m = rules(patterns);
            let set = RegexSet::new(patterns).unwrap();
            let mut hits = 0;
            for text in texts() {
                let want = set.is_match(&text);
                hits += want as usize;
                assert_eq!(m.is_match(&text), want, "{patterns:?} on {text:?}");
            }
            assert!(hits > 10, "{patterns:?}: the texts must exercise matches");
        }
    }

    #[test]
    fn a_match_across_the_cut_is_found() {
        let phrase = "ignore previous INSTRUCTIONS";
        let m = rules(&["(?i)ignore previous instructions"]);
        assert!(m.splits());
        // 4,000 bytes: the cut is at 2,000; the phrase starts on either side of it.
        for before in 1950..2010 {
            let after = 4000 - before - phrase.len();
            let text = format!("{}{phrase}{}", "a".repeat(before), "z".repeat(after));
            assert!(m.is_match(&text), "phrase at {before}");
            let broken = text.replace("previous", "previoux");
            assert!(!m.is_match(&broken), "no phrase at {before}");
        }
    }

    #[test]
    fn falls_back_where_ascii_semantics_would_differ() {
        // A card-number rule whose DFA is too large to minimize quickly.
        assert!(!rules(&[r"(?i)\b(?:\d[ -]?){13,16}\b"]).splits());
        // No longest match: no split.
        assert!(!rules(&["ignore.*instructions"]).splits());
        // Needs Unicode classes.
        assert!(!rules(&[r"\p{Greek}+"]).splits());
        // Non-ASCII text goes to the Unicode set: `\d` matches Arabic-Indic digits.
        let m = rules(&[r"\d{3}-\d{2}-\d{4}"]);
        let text = format!("{} ١٢٣-٤٥-٦٧٨٩", "word ".repeat(100));
        assert!(m.is_match(&text));
    }
}
