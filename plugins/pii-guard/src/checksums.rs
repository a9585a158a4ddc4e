//! The validators that turn a pattern match into a certain finding (score
//! 1.0) or drop it, as Presidio's `validate_result` / `invalidate_result`.

use sha2::{Digest, Sha256};

pub use wardgate_sdk::text::luhn;

/// Presidio's SSN invalidation: mixed separators, one repeated digit, a
/// zero group or serial, and the numbers known from samples and ads.
pub fn ssn_is_invalid(s: &str) -> bool {
    let seps: Vec<char> = s.chars().filter(|c| !c.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w[0] != w[1]) {
        return true;
    }
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 9 {
        return true;
    }
    let first = digits.as_bytes()[0];
    if digits.bytes().all(|b| b == first) {
        return true;
    }
    if &digits[3..5] == "00" || &digits[5..] == "0000" {
        return true;
    }
    ["000", "666", "123456789", "98765432", "078051120"]
        .iter()
        .any(|p| digits.starts_with(p))
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

pub fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| *c == country)
        .map(|(_, n)| *n)
}

/// ISO 7064 mod 97-10 over an IBAN without separators.
pub fn iban_checksum(compact: &str) -> bool {
    if compact.len() < 5 || !compact.is_ascii() {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
}

/// A Bitcoin address: base58check (P2PKH `1…`, P2SH `3…`) or bech32/bech32m
/// (`bc1…`) with a valid checksum.
pub fn bitcoin_address(s: &str) -> bool {
    if s.len() > 3 && s[..3].eq_ignore_ascii_case("bc1") {
        return bech32::segwit::decode(s)
            .map(|(hrp, _, _)| hrp == bech32::hrp::BC)
            .unwrap_or(false);
    }
    let Ok(raw) = bs58::decode(s).into_vec() else {
        return false;
    };
    if raw.len() != 25 || !matches!(raw[0], 0x00 | 0x05) {
        return false;
    }
    let (payload, check) = raw.split_at(21);
    let digest = Sha256::digest(Sha256::digest(payload));
    digest[..4] == *check
}

/// Top-level domains accepted for emails and bare-domain URLs: every
/// two-letter (country) code and the common generic ones. Presidio checks
/// against the public-suffix list; this keeps the common part of it.
pub fn known_tld(tld: &str) -> bool {
    const GENERIC: &[&str] = &[
        "com",
        "org",
        "net",
        "edu",
        "gov",
        "mil",
        "int",
        "info",
        "biz",
        "name",
        "pro",
        "mobi",
        "app",
        "dev",
        "io",
        "ai",
        "xyz",
        "online",
        "site",
        "tech",
        "store",
        "shop",
        "cloud",
        "blog",
        "email",
        "news",
        "media",
        "live",
        "life",
        "world",
        "today",
        "group",
        "company",
        "solutions",
        "services",
        "agency",
        "digital",
        "network",
        "systems",
        "software",
        "space",
        "website",
        "page",
        "link",
        "club",
        "design",
        "studio",
        "global",
        "work",
        "team",
        "finance",
        "bank",
        "health",
        "law",
        "museum",
        "travel",
        "jobs",
        "aero",
        "coop",
        "asia",
        "tel",
        "cat",
        "top",
        "icu",
        "vip",
        "fun",
        "art",
        "eu",
        "lol",
        "wiki",
        "guru",
        "zone",
        "center",
    ];
    let tld = tld.to_ascii_lowercase();
    (tld.len() == 2 && tld.bytes().all(|b| b.is_ascii_lowercase()))
        || GENERIC.contains(&tld.as_str())
}

/// Country codes that are far more often file extensions.
pub fn file_extension(tld: &str) -> bool {
    const EXT: &[&str] = &[
        "rs", "py", "sh", "md", "pl", "ps", "so", "ts", "cs", "rb", "kt", "mk", "ml", "hs", "sc",
        "gz", "js", "hh", "db", "psd", "txt", "json", "yaml", "toml", "html",
    ];
    EXT.contains(&tld.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iban_mod97_and_lengths() {
        assert!(iban_checksum("DE89370400440532013000"));
        assert!(iban_checksum("GB82WEST12345698765432"));
        assert!(!iban_checksum("DE89370400440532013001"));
        assert_eq!(iban_length("DE"), Some(22));
        assert_eq!(iban_length("ZZ"), None);
    }

    #[test]
    fn bitcoin_checksums() {
        assert!(bitcoin_address("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"));
        assert!(bitcoin_address("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(bitcoin_address(
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
        ));
        assert!(!bitcoin_address("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"));
        assert!(!bitcoin_address(
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdz"
        ));
    }

    #[test]
    fn ssn_invalidation_rules() {
        assert!(!ssn_is_invalid("536-22-8726"));
        assert!(ssn_is_invalid("536-22.8726"));
        assert!(ssn_is_invalid("111-11-1111"));
        assert!(ssn_is_invalid("536-00-8726"));
        assert!(ssn_is_invalid("666-22-8726"));
        assert!(ssn_is_invalid("078-05-1120"));
    }
}
