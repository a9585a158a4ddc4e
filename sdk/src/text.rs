//! Small text helpers that policies keep needing: checksums and rewriting
//! the strings inside a JSON document.

use serde_json::Value;

/// The Luhn checksum over the digits of `s` (spaces, dashes and other
/// characters skipped); false with fewer than two digits.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 2 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (1, d2) if d2 > 9 => d2 - 9,
            (1, d2) => d2,
            _ => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Rewrite every string value inside `value` (object keys stay): `f`
/// returns `Some(new)` to replace one, or an error to stop. True when
/// anything changed.
pub fn rewrite_json_strings<E>(
    value: &mut Value,
    f: &mut impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<bool, E> {
    match value {
        Value::String(s) => Ok(match f(s)? {
            Some(new) => {
                *s = new;
                true
            }
            None => false,
        }),
        Value::Array(items) => {
            let mut changed = false;
            for v in items {
                changed |= rewrite_json_strings(v, f)?;
            }
            Ok(changed)
        }
        Value::Object(map) => {
            let mut changed = false;
            for v in map.values_mut() {
                changed |= rewrite_json_strings(v, f)?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_one_digit_off() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(luhn("378282246310005"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("0"));
    }

    #[test]
    fn json_strings_are_rewritten_keys_kept() {
        let mut v = serde_json::json!({"to": "bob", "n": 1, "cc": ["bob", "ann"]});
        let changed = rewrite_json_strings(&mut v, &mut |s| {
            Ok::<_, ()>((s == "bob").then(|| "<X>".to_string()))
        });
        assert_eq!(changed, Ok(true));
        assert_eq!(
            v,
            serde_json::json!({"to": "<X>", "n": 1, "cc": ["<X>", "ann"]})
        );
    }
}
