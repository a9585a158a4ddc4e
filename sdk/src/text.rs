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

/// Whether `test` holds for some string value in the JSON document `json`
/// (object keys aside, as in [`rewrite_json_strings`]); `None` when `json`
/// is not valid JSON. The document is walked, not built: nothing is
/// allocated but unescaped copies of strings with escapes, so a policy can
/// look before it parses a document it will most often leave alone.
pub fn any_json_string(json: &str, test: &mut impl FnMut(&str) -> bool) -> Option<bool> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(json);
    let found = Walk(test).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(found)
}

/// One JSON value visited for [`any_json_string`]: true if a string in it passed.
struct Walk<'f, F>(&'f mut F);

impl<'de, F: FnMut(&str) -> bool> serde::de::DeserializeSeed<'de> for Walk<'_, F> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(&str) -> bool> serde::de::Visitor<'de> for Walk<'_, F> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, s: &str) -> Result<bool, E> {
        Ok((self.0)(s))
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        // The rest is still walked: an invalid document must say so.
        while let Some(hit) = seq.next_element_seed(Walk(&mut *self.0))? {
            found |= hit;
        }
        Ok(found)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            found |= map.next_value_seed(Walk(&mut *self.0))?;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_json_string_sees_values_not_keys_and_refuses_invalid_json() {
        let has_at = &mut |s: &str| s.contains('@');
        assert_eq!(
            any_json_string(r#"{"to": ["x", {"mail": "a@b.c"}], "n": 1}"#, has_at),
            Some(true)
        );
        assert_eq!(
            any_json_string(r#"{"a@b": "x", "n": [1, null, true]}"#, has_at),
            Some(false)
        );
        // Escapes are decoded before the test sees the string.
        assert_eq!(any_json_string(r#"["a\u0040b"]"#, has_at), Some(true));
        assert_eq!(any_json_string(r#""a@b""#, has_at), Some(true));
        assert_eq!(any_json_string(r#"{"a": "x@y""#, has_at), None);
        assert_eq!(any_json_string(r#"{"a": 1} trailing"#, has_at), None);
        assert_eq!(any_json_string("plain a@b", has_at), None);
    }

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
