//! Stored content as FHIR JSON text.
//!
//! `jsonb` keeps an object's keys sorted by length, so `resourceType` comes out in the
//! middle of a resource; FHIR JSON is written with it first. PostgreSQL hands over the
//! text as it stores it and the move happens here, which costs a scan of the text instead
//! of a rebuilt `jsonb` value on the database for every row read.

/// The resource text `json` with its top-level `resourceType` member moved to the front.
/// Text without such a member (or that is not a JSON object) is returned unchanged.
pub(crate) fn resource_type_first(json: String) -> String {
    let Some(member) = top_level_member(&json, "resourceType") else {
        return json;
    };
    if member.start == first_member_start(&json) {
        return json;
    }
    let mut out = String::with_capacity(json.len());
    out.push('{');
    out.push_str(&json[member.start..member.end]);
    out.push_str(", ");
    // Everything else in order, without the member and the separator before it.
    let body_start = first_member_start(&json);
    out.push_str(json[body_start..member.separator].trim_end());
    out.push_str(&json[member.end..]);
    out
}

/// [`resource_type_first`] of `json`, appended to `out` (no allocation when `out` has room).
pub(crate) fn push_resource_type_first(json: &str, out: &mut String) {
    let body_start = first_member_start(json);
    match top_level_member(json, "resourceType") {
        Some(member) if member.start != body_start => {
            out.push('{');
            out.push_str(&json[member.start..member.end]);
            out.push_str(", ");
            out.push_str(json[body_start..member.separator].trim_end());
            out.push_str(&json[member.end..]);
        }
        _ => out.push_str(json),
    }
}

/// Where a top-level member lies in an object's text.
struct Member {
    /// The start of the separator (`,`) before it.
    separator: usize,
    /// The start of its key.
    start: usize,
    /// Just past its value.
    end: usize,
}

/// The first non-blank byte after the opening brace.
fn first_member_start(json: &str) -> usize {
    let bytes = json.as_bytes();
    let open = bytes.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
    open + bytes[open..]
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .count()
}

/// Finds the top-level member named `key` by scanning the object's text once, skipping
/// strings and nested values.
fn top_level_member(json: &str, key: &str) -> Option<Member> {
    if !json.trim_start().starts_with('{') {
        return None;
    }
    let bytes = json.as_bytes();
    let quoted_len = key.len() + 2;
    let mut depth = 0usize;
    let mut i = 0;
    let mut separator = 0;
    // At depth 1, whether the next string is a key.
    let mut expect_key = false;
    let mut found: Option<(usize, usize)> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i)?;
                if depth == 1 && expect_key {
                    expect_key = false;
                    if end - i == quoted_len && &json[i + 1..end - 1] == key {
                        found = Some((separator, i));
                    }
                }
                i = end;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 1 {
                    expect_key = true;
                    separator = i + 1;
                }
            }
            b'}' | b']' => {
                if depth == 1 {
                    return found.map(|(separator, start)| Member {
                        separator,
                        start,
                        end: trim_end_at(bytes, i),
                    });
                }
                depth = depth.checked_sub(1)?;
            }
            b',' if depth == 1 => {
                if let Some((separator, start)) = found {
                    return Some(Member {
                        separator,
                        start,
                        end: trim_end_at(bytes, i),
                    });
                }
                expect_key = true;
                separator = i;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Just past the closing quote of the string that opens at `start`. Most of a resource's
/// text is inside strings: they are skipped a vector at a time, to the next quote or escape.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        i += memchr::memchr2(b'"', b'\\', &bytes[i..])?;
        if bytes[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
    None
}

/// `end` moved back over blanks.
fn trim_end_at(bytes: &[u8], end: usize) -> usize {
    end - bytes[..end]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count()
}

#[cfg(test)]
mod tests {
    use super::{push_resource_type_first, resource_type_first};

    fn moved(json: &str) -> String {
        let moved = resource_type_first(json.to_owned());
        let mut pushed = String::from("before");
        push_resource_type_first(json, &mut pushed);
        assert_eq!(pushed, format!("before{moved}"), "{json}");
        moved
    }

    #[test]
    fn moves_the_member_to_the_front_as_jsonb_writes_it() {
        assert_eq!(
            moved(
                r#"{"id": "a", "meta": {"versionId": "1"}, "resourceType": "Patient", "birthDate": "2000"}"#
            ),
            r#"{"resourceType": "Patient", "id": "a", "meta": {"versionId": "1"}, "birthDate": "2000"}"#
        );
        assert_eq!(
            moved(r#"{"id": "a", "resourceType": "Patient"}"#),
            r#"{"resourceType": "Patient", "id": "a"}"#
        );
    }

    #[test]
    fn leaves_text_that_needs_no_move_alone() {
        for json in [
            r#"{"resourceType": "Patient", "id": "a"}"#,
            r#"{"resourceType":"Patient"}"#,
            r#"{"id": "a"}"#,
            "{}",
            "[]",
            "",
            r#"{"id": "unterminated"#,
        ] {
            assert_eq!(moved(json), json);
        }
    }

    #[test]
    fn ignores_nested_members_and_strings_that_look_like_them() {
        let json = r#"{"id": "a", "contained": [{"id": "o", "resourceType": "Organization"}], "text": "\"resourceType\": \"x\", {[", "resourceType": "Patient"}"#;
        assert_eq!(
            moved(json),
            r#"{"resourceType": "Patient", "id": "a", "contained": [{"id": "o", "resourceType": "Organization"}], "text": "\"resourceType\": \"x\", {["}"#
        );
        // An escaped backslash just before a closing quote, and one before an escaped quote.
        let json = r#"{"id": "a\\", "text": "\\\"}, ", "resourceType": "Patient"}"#;
        assert_eq!(
            moved(json),
            r#"{"resourceType": "Patient", "id": "a\\", "text": "\\\"}, "}"#
        );
    }

    #[test]
    fn keeps_the_document_equal() {
        let json = r#"{"id": "a", "name": [{"given": ["Ann", "B"]}], "active": true, "resourceType": "Patient", "deceasedBoolean": false}"#;
        let before: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        let after: serde_json::Value = serde_json::from_str(&moved(json)).unwrap_or_default();
        assert_eq!(before, after);
        assert!(moved(json).starts_with(r#"{"resourceType": "Patient","#));
    }
}
