//! The public FHIR patch test cases (Maven Central `org.hl7.fhir.testcases:fhir-test-cases`,
//! `r4/patch/`, unpacked under the directory named by `FHIR_TEST_CASES_DIR`; skipped when it
//! is unset, except under CI):
//!
//! - `fhir-patch-tests.xml`: FHIRPath Patch, each case an input Patient, a Parameters and the
//!   expected output (or an error), in FHIR XML;
//! - `json-patch-tests.json`: JSON Patch (RFC 6902) on plain JSON documents.
//!
//! Every case is run; none is left out. `xml-patch-tests.xml` (XML Patch, RFC 5261) is not
//! run: Ferrum does not support XML Patch.

use std::path::PathBuf;

use fhir_core::patch::{Patch, PatchError};
use fhir_core::xml::xml_to_json;
use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::Value;

/// The unpacked test cases, from `FHIR_TEST_CASES_DIR`: under CI they must be there.
fn patch_cases_dir() -> Option<PathBuf> {
    match std::env::var_os("FHIR_TEST_CASES_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir).join("r4/patch");
            assert!(
                dir.join("fhir-patch-tests.xml").is_file(),
                "FHIR_TEST_CASES_DIR does not hold r4/patch/fhir-patch-tests.xml ({})",
                dir.display()
            );
            Some(dir)
        }
        None if std::env::var_os("CI").is_some() => {
            panic!("FHIR_TEST_CASES_DIR must be set under CI (scripts/test fetches the test cases)")
        }
        None => {
            eprintln!(
                "skipped: FHIR_TEST_CASES_DIR is not set (the unpacked \
                 org.hl7.fhir.testcases:fhir-test-cases jar)"
            );
            None
        }
    }
}

/// One case of `fhir-patch-tests.xml`.
#[derive(Debug)]
struct Case {
    name: String,
    input: String,
    diff: String,
    /// The expected resource; `None` when the case expects an error.
    output: Option<String>,
}

/// The cases of `fhir-patch-tests.xml`: `<case name>` elements holding `<input>`, `<diff>`
/// and `<output>` (each wrapping one FHIR XML resource) or `<error>`.
fn fhir_patch_cases(text: &str) -> Vec<Case> {
    let mut reader = Reader::from_str(text);
    let mut cases = Vec::new();
    let mut name = None;
    // The section being read (`input`, `diff`, `output`) and where its content starts.
    let mut section: Option<(String, usize)> = None;
    let mut parts: Vec<(String, String)> = Vec::new();
    let mut depth = 0;
    loop {
        let before = reader.buffer_position();
        let event = reader
            .read_event()
            .expect("the test cases are well-formed XML");
        match event {
            Event::Start(start) => {
                depth += 1;
                let tag = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                match (depth, tag.as_str()) {
                    (2, "case") => {
                        let attribute = start
                            .try_get_attribute("name")
                            .expect("attributes")
                            .expect("a case has a name");
                        name = Some(attribute.unescape_value().expect("name").into_owned());
                        parts.clear();
                    }
                    (3, "input" | "diff" | "output") => {
                        section = Some((tag, reader.buffer_position()));
                    }
                    _ => {}
                }
            }
            Event::End(end) => {
                let tag = String::from_utf8_lossy(end.name().as_ref()).into_owned();
                if depth == 3
                    && let Some((open, start)) = section.take_if(|(open, _)| *open == tag)
                {
                    parts.push((open, text[start..before].trim().to_owned()));
                }
                if depth == 2 && tag == "case" {
                    let take = |wanted: &str| {
                        parts
                            .iter()
                            .find(|(part, _)| part == wanted)
                            .map(|(_, content)| content.clone())
                    };
                    cases.push(Case {
                        name: name.take().expect("a case has a name"),
                        input: take("input").expect("a case has an input"),
                        diff: take("diff").expect("a case has a diff"),
                        output: take("output"),
                    });
                }
                depth -= 1;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    cases
}

/// FHIR XML as FHIR JSON.
#[track_caller]
fn json_of(xml: &str, what: &str) -> Value {
    xml_to_json(xml).unwrap_or_else(|issues| panic!("{what} is not FHIR XML: {issues:?}"))
}

/// XHTML text in a form where equal content is equal text, as an XML reader sees it: an
/// escape (`&quot;`) and the character it stands for are the same, and so are the line ends
/// `\r\n` and `\n` (XML 1.0, 2.11). A narrative is kept as written, so the expected output's
/// `div`, read from a file with `\r\n` line ends and escaped quotes, is compared this way with
/// the `div` a `valueString` put in place.
fn xhtml_text(xhtml: &str) -> String {
    let xhtml = xhtml.replace("\r\n", "\n").replace('\r', "\n");
    let mut reader = Reader::from_str(&xhtml);
    let mut out = String::new();
    loop {
        match reader.read_event().expect("the narrative is XHTML") {
            Event::Start(tag) => out.push_str(&format!("<{}>", String::from_utf8_lossy(&tag))),
            Event::End(tag) => out.push_str(&format!(
                "</{}>",
                String::from_utf8_lossy(tag.name().as_ref())
            )),
            Event::Empty(tag) => out.push_str(&format!("<{}/>", String::from_utf8_lossy(&tag))),
            Event::Text(text) => out.push_str(&text.unescape().expect("text")),
            Event::Eof => return out,
            _ => {}
        }
    }
}

/// The resource with each narrative `div` in the form of [`xhtml_text`].
fn comparable(mut resource: Value) -> Value {
    if let Some(div) = resource
        .pointer_mut("/text/div")
        .filter(|div| div.is_string())
    {
        let text = xhtml_text(div.as_str().unwrap_or_default());
        *div = Value::String(text);
    }
    resource
}

#[test]
fn fhirpath_patch_test_cases() {
    let Some(dir) = patch_cases_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("fhir-patch-tests.xml")).expect("readable");
    let cases = fhir_patch_cases(&text);
    assert_eq!(
        cases.len(),
        text.matches("<case ").count(),
        "every case is read"
    );
    assert!(!cases.is_empty());
    let mut failed = Vec::new();
    for case in &cases {
        let mut resource = json_of(&case.input, &case.name);
        let result =
            Patch::fhirpath(&json_of(&case.diff, &case.name)).and_then(|p| p.apply(&mut resource));
        match (&case.output, result) {
            (Some(output), Ok(())) => {
                let expected = json_of(output, &case.name);
                if comparable(resource.clone()) != comparable(expected.clone()) {
                    failed.push(format!(
                        "{}: got {resource}, expected {expected}",
                        case.name
                    ));
                }
            }
            (Some(_), Err(error)) => failed.push(format!("{}: failed: {error}", case.name)),
            (None, Ok(())) => failed.push(format!("{}: applied, expected an error", case.name)),
            (None, Err(PatchError::NotApplicable { .. })) => {}
            (None, Err(error)) => failed.push(format!(
                "{}: expected the patch not to apply, got: {error}",
                case.name
            )),
        }
    }
    assert!(
        failed.is_empty(),
        "{} cases fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
    println!("{} FHIRPath Patch cases pass", cases.len());
}

#[test]
fn json_patch_test_cases() {
    let Some(dir) = patch_cases_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("json-patch-tests.json")).expect("readable");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("a JSON list of cases");
    assert!(!cases.is_empty());
    let mut failed = Vec::new();
    for case in &cases {
        let name = case["comment"].as_str().unwrap_or("a case without comment");
        let mut doc = case["doc"].clone();
        let result =
            Patch::json(case["patch"].to_string().as_bytes()).and_then(|p| p.apply(&mut doc));
        match (case.get("expected"), result) {
            (Some(expected), Ok(())) if *expected == doc => {}
            (Some(expected), Ok(())) => {
                failed.push(format!("{name}: got {doc}, expected {expected}"));
            }
            (Some(_), Err(error)) => failed.push(format!("{name}: failed: {error}")),
            (None, Ok(())) => failed.push(format!("{name}: applied, expected an error")),
            (None, Err(_)) => assert!(case.get("error").is_some(), "{name}: no expectation"),
        }
    }
    assert!(
        failed.is_empty(),
        "{} cases fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
    println!("{} JSON Patch cases pass", cases.len());
}
