//! FHIR JSON names every member of an object once ("Property names SHALL be unique",
//! http://hl7.org/fhir/R4/json.html). A reader into a map keeps the last of two members of
//! the same name and drops the other without a word, so the check reads the text itself.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

/// Where a member named twice in one object of `json` is, as a path from the
/// document's root (`.name[0].family`; the `_` of a primitive's extensions left out:
/// `_birthDate` is `.birthDate`). `None` when every name is unique, and for text that is not
/// JSON (which the caller has read already).
pub(crate) fn repeated(json: &str) -> Option<String> {
    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    // An error is either the repeated name (in `found`) or text that is not JSON.
    let _ = Scan { found: &mut found }.deserialize(&mut deserializer);
    found.map(|path| path.iter().rev().map(String::as_str).collect())
}

/// Visits one JSON value. When a name is repeated in it, `found` holds the path to it, its
/// segments innermost first: the path is only written then, on the way out.
struct Scan<'a> {
    found: &'a mut Option<Vec<String>>,
}

impl Scan<'_> {
    /// `result` of the value at `segment`, adding the segment to the path of what was found.
    fn within<T, E>(
        &mut self,
        segment: impl FnOnce() -> String,
        result: Result<T, E>,
    ) -> Result<T, E> {
        if let (Err(_), Some(path)) = (&result, self.found.as_mut()) {
            path.push(segment());
        }
        result
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        for index in 0.. {
            let item = seq.next_element_seed(Scan { found: self.found });
            if self.within(|| format!("[{index}]"), item)?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut names: Vec<Cow<'de, str>> = Vec::new();
        while let Some(name) = map.next_key_seed(Name)? {
            let value = map.next_value_seed(Scan { found: self.found });
            self.within(|| segment(&name), value)?;
            names.push(name);
        }
        // Sorted, so that an object of many members costs no more than reading it.
        names.sort_unstable();
        let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) else {
            return Ok(());
        };
        *self.found = Some(vec![segment(&pair[0])]);
        Err(A::Error::custom("a member is named twice"))
    }
}

/// The path segment of the member `name`: the element it is about.
fn segment(name: &str) -> String {
    format!(".{}", name.strip_prefix('_').unwrap_or(name))
}

/// A member's name, borrowed from the text unless it holds an escape.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_member_named_twice_wherever_it_is() {
        let cases = [
            (r#"{"a": 1, "b": 2}"#, None),
            (r#"{"a": 1, "a": 2}"#, Some(".a")),
            (r#"{"a": {"b": 1}, "c": {"b": 1}}"#, None),
            (
                r#"{"name": [{"family": "x"}, {"given": ["y"], "given": []}]}"#,
                Some(".name[1].given"),
            ),
            (
                r#"{"birthDate": "1980", "_birthDate": {}, "_birthDate": {}}"#,
                Some(".birthDate"),
            ),
            (r#"{"birthDate": "1980", "_birthDate": {"id": "x"}}"#, None),
            (r#"{"x": [[{"y": 1.50, "y": 2}]]}"#, Some(".x[0][0].y")),
            (r#"{"a\u0062": 1, "ab": 2}"#, Some(".ab")),
            (r#"{"a": 1, "a": 2"#, None),
            ("[1, 2]", None),
        ];
        for (json, expected) in cases {
            assert_eq!(repeated(json).as_deref(), expected, "{json}");
        }
    }

    #[test]
    fn an_object_of_many_members_is_read_once() {
        let members: Vec<String> = (0..100_000).map(|n| format!(r#""m{n}": {n}"#)).collect();
        let json = format!("{{{}}}", members.join(","));
        assert_eq!(repeated(&json), None);
        let json = format!(r#"{{{}, "m7": 0}}"#, members.join(","));
        assert_eq!(repeated(&json).as_deref(), Some(".m7"));
    }
}
