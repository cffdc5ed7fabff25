//! FHIR XML ⇄ FHIR JSON (http://hl7.org/fhir/R4/xml.html): a well-formedness check and
//! byte-exact narratives around fhirbolt's R4 conversion, and located errors for bad XML.
//!
//! fhirbolt reads and writes the FHIR structure but re-flows the XHTML of `text.div` (it trims
//! and re-indents text nodes), and its reader stops at the end of the root element without
//! noticing unclosed tags. So every document is first scanned here: the scan refuses
//! malformed XML and finds each narrative `<div>`; each is swapped for a placeholder before
//! fhirbolt sees the document, and the original XHTML is put back into the result.
//!
//! A narrative is carried verbatim when it is plain XHTML: unprefixed elements, all in the
//! XHTML namespace, attributes unprefixed or `xml:`, no CDATA or processing instructions.
//! Any other narrative is left to fhirbolt as before, which refuses any `xmlns:prefix`
//! declaration (so an `h:div` is refused) and CDATA and processing instructions.

use std::borrow::Cow;

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use serde_json::Value;

use crate::outcome::{Issue, IssueCode};

/// The XHTML namespace, the only one allowed in a narrative.
const XHTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// Text of a placeholder narrative; the index of the original follows it.
const PLACEHOLDER_MARK: &str = "ferrum-narrative-";

/// The most issues one conversion reports, as for JSON.
const MAX_ISSUES: usize = 100;

/// Parses a FHIR XML resource into its FHIR JSON form (narrative kept byte-exact as XHTML text).
///
/// Malformed XML is refused with a `structure` issue that gives only the position; a resource
/// fhirbolt's strict R4 reader refuses is explained, where possible, by the validator's issues
/// on a lenient reading of it, which name the element at fault (`Patient.foo`).
pub fn xml_to_json(text: &str) -> Result<Value, Vec<Issue>> {
    // A UTF-8 byte order mark is allowed; dropping it here keeps every offset below exact.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if has_doctype(text) {
        // FHIR XML forbids DTDs; refusing early also keeps entity declarations away.
        return Err(vec![Issue::error(
            IssueCode::Structure,
            "malformed XML: a DOCTYPE is not allowed in FHIR XML",
        )]);
    }
    let narratives = scan(text, false).map_err(|fault| vec![fault.issue(text)])?;
    let mut originals = Vec::new();
    let mut swapped = String::with_capacity(text.len());
    let mut copied = 0;
    for narrative in narratives.iter().filter(|n| n.verbatim) {
        swapped.push_str(&text[copied..narrative.start]);
        swapped.push_str(&placeholder(originals.len()));
        originals.push(narrative.xhtml(text));
        copied = narrative.end;
    }
    swapped.push_str(&text[copied..]);

    let json = fhir_codec::xml_to_json(&swapped)
        .map_err(|error| explain(&swapped, &error))?
        .map_err(|_| {
            vec![Issue::error(
                IssueCode::Structure,
                "the XML resource cannot be represented as JSON",
            )]
        })?;
    let mut value: Value = serde_json::from_str(&json).map_err(|_| {
        vec![Issue::error(
            IssueCode::Structure,
            "the XML resource cannot be represented as JSON",
        )]
    })?;
    if restore_json(&mut value, &originals) != originals.len() {
        // A lost narrative would silently drop what the resource says to a human reader.
        return Err(vec![Issue::error(
            IssueCode::Exception,
            "the narrative was lost in the conversion",
        )]);
    }
    Ok(value)
}

/// Writes a FHIR JSON resource (as stored: JSON text) as FHIR XML, narrative kept exactly.
///
/// The first line is fhirbolt's XML declaration; the rest is fhirbolt's indented FHIR XML with
/// each `text.div` written as stored.
pub fn json_to_xml(json: &str) -> Result<String, Issue> {
    let invalid = || Issue::error(IssueCode::Exception, "stored resource is not valid R4");
    let mut value: Value = serde_json::from_str(json).map_err(|_| invalid())?;
    let mut originals = Vec::new();
    swap_json(&mut value, &mut originals);
    let swapped = if originals.is_empty() {
        Cow::Borrowed(json)
    } else {
        Cow::Owned(value.to_string())
    };
    let xml = fhir_codec::json_to_xml(&swapped)
        .map_err(|_| invalid())?
        .map_err(|_| Issue::error(IssueCode::Exception, "cannot serialise the resource as XML"))?;
    if originals.is_empty() {
        return Ok(xml);
    }
    restore_xml(&xml, &originals).ok_or_else(|| {
        Issue::error(
            IssueCode::Exception,
            "cannot serialise the narrative as XML",
        )
    })
}

/// The placeholder that stands for narrative `index` while fhirbolt converts the rest.
fn placeholder(index: usize) -> String {
    format!("<div xmlns=\"{XHTML_NAMESPACE}\">{PLACEHOLDER_MARK}{index}</div>")
}

/// The narrative index a placeholder's text stands for.
fn placeholder_index(text: &str) -> Option<usize> {
    text.trim().strip_prefix(PLACEHOLDER_MARK)?.parse().ok()
}

/// Puts the original XHTML back where fhirbolt's JSON holds a placeholder; returns how many.
fn restore_json(value: &mut Value, originals: &[String]) -> usize {
    let mut restored = 0;
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "div"
                    && let Value::String(div) = child
                {
                    let original = div
                        .strip_prefix(&format!("<div xmlns=\"{XHTML_NAMESPACE}\">"))
                        .and_then(|rest| rest.strip_suffix("</div>"))
                        .and_then(placeholder_index)
                        .and_then(|index| originals.get(index));
                    if let Some(original) = original {
                        *div = original.clone();
                        restored += 1;
                    }
                    continue;
                }
                restored += restore_json(child, originals);
            }
        }
        Value::Array(items) => {
            for item in items {
                restored += restore_json(item, originals);
            }
        }
        _ => {}
    }
    restored
}

/// Swaps each verbatim-safe narrative (`text.div`, at any depth: contained resources, bundle
/// entries) for a placeholder, collecting the originals in order.
fn swap_json(value: &mut Value, originals: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "text"
                    && let Some(Value::String(div)) = child.get_mut("div")
                    && is_verbatim_fragment(div)
                {
                    let original = std::mem::replace(div, placeholder(originals.len()));
                    originals.push(original);
                }
                swap_json(child, originals);
            }
        }
        Value::Array(items) => {
            for item in items {
                swap_json(item, originals);
            }
        }
        _ => {}
    }
}

/// Whether a stored `div` string is exactly one plain XHTML `div` that declares its
/// namespace, so it can be written into the XML document as it is and read back unchanged.
fn is_verbatim_fragment(div: &str) -> bool {
    if has_doctype(div) {
        return false;
    }
    match scan(div, true).as_deref() {
        Ok([narrative]) => {
            narrative.verbatim
                && narrative.declares_namespace
                && narrative.start == 0
                && narrative.end == div.len()
        }
        _ => false,
    }
}

/// Replaces each placeholder narrative in fhirbolt's XML output with the original XHTML.
/// `None` unless each original is put back exactly once.
fn restore_xml(xml: &str, originals: &[String]) -> Option<String> {
    let narratives = scan(xml, false).ok()?;
    let extra: usize = originals.iter().map(String::len).sum();
    let mut out = String::with_capacity(xml.len() + extra);
    let mut restored = vec![false; originals.len()];
    let mut copied = 0;
    for narrative in &narratives {
        let element = &xml[narrative.start..narrative.end];
        let Some(index) = element
            .split_once('>')
            .and_then(|(_, rest)| rest.rsplit_once('<'))
            .and_then(|(inner, _)| placeholder_index(inner))
        else {
            continue;
        };
        let (Some(original), Some(done)) = (originals.get(index), restored.get_mut(index)) else {
            return None;
        };
        if std::mem::replace(done, true) {
            return None;
        }
        out.push_str(&xml[copied..narrative.start]);
        out.push_str(original);
        copied = narrative.end;
    }
    out.push_str(&xml[copied..]);
    // A lost narrative would silently drop what the resource says to a human reader.
    restored.iter().all(|done| *done).then_some(out)
}

/// Whether the text holds a document type declaration (quick-xml checks its form only with
/// debug assertions, and FHIR XML does not allow one anywhere).
fn has_doctype(text: &str) -> bool {
    text.as_bytes()
        .windows(9)
        .any(|w| w.eq_ignore_ascii_case(b"<!doctype"))
}

/// A narrative `div` found by [`scan`], as a byte range of the scanned text.
#[derive(Debug, Clone, Copy)]
struct Narrative {
    /// Offset of the `<` of the start tag.
    start: usize,
    /// Offset just past the `>` of the end tag.
    end: usize,
    /// The `div` carries `xmlns="http://www.w3.org/1999/xhtml"` itself.
    declares_namespace: bool,
    /// Plain XHTML that may be copied as it is (see the module documentation).
    verbatim: bool,
}

impl Narrative {
    /// The XHTML of the narrative as FHIR JSON holds it: with its own namespace declaration.
    fn xhtml(&self, text: &str) -> String {
        let element = &text[self.start..self.end];
        if self.declares_namespace {
            element.to_owned()
        } else {
            // The scan saw an unprefixed start tag, so it begins with `<div`.
            let rest = element.get(4..).unwrap_or_default();
            format!("<div xmlns=\"{XHTML_NAMESPACE}\"{rest}")
        }
    }
}

/// Why a text is not well-formed XML, and where.
#[derive(Debug, Clone, Copy)]
struct Fault {
    offset: usize,
    reason: &'static str,
}

impl Fault {
    /// The issue for a malformed document: the reason and the position, never the content.
    fn issue(&self, text: &str) -> Issue {
        let before = text.get(..self.offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit_once('\n')
            .map_or(before, |(_, last)| last)
            .chars()
            .count()
            + 1;
        Issue::error(
            IssueCode::Structure,
            format!(
                "malformed XML: {} (line {line}, column {column})",
                self.reason
            ),
        )
    }
}

/// Checks that `text` is one well-formed XML element (with optional prolog and trailing
/// comments or whitespace) and returns its narratives: the `div` elements met in FHIR
/// content (`fragment`: the root element itself is the narrative).
fn scan(text: &str, fragment: bool) -> Result<Vec<Narrative>, Fault> {
    let mut reader = NsReader::from_str(text);
    // Whitespace is content inside narratives; positions must stay exact.
    reader.trim_text(false);
    let mut narratives = Vec::new();
    // The narrative being read and the depth of its `div`.
    let mut open: Option<(Narrative, usize)> = None;
    let mut depth = 0usize;
    let mut root_closed = false;
    loop {
        let before = reader.buffer_position();
        let (xhtml, event) = match reader.read_resolved_event() {
            Ok((namespace, event)) => (is_xhtml(&namespace), event),
            Err(error) => {
                return Err(Fault {
                    offset: reader.buffer_position(),
                    reason: reason(&error),
                });
            }
        };
        let after = reader.buffer_position();
        let fault = |reason| Fault {
            offset: before,
            reason,
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let empty = matches!(event, Event::Empty(_));
                if root_closed {
                    return Err(fault("content after the root element"));
                }
                check_attributes(start).map_err(fault)?;
                match open.as_mut() {
                    Some((narrative, _)) => {
                        narrative.verbatim &= is_plain_xhtml(start, xhtml);
                    }
                    // As fhirbolt does, any `div` in FHIR content is a narrative; one outside
                    // the XHTML namespace is left for fhirbolt to refuse.
                    None if start.local_name().as_ref() == b"div"
                        && (fragment || depth > 0)
                        && xhtml =>
                    {
                        let narrative = Narrative {
                            start: before,
                            end: after,
                            declares_namespace: declares_xhtml(start),
                            verbatim: is_plain_xhtml(start, xhtml),
                        };
                        if empty {
                            narratives.push(narrative);
                        } else {
                            open = Some((narrative, depth + 1));
                        }
                    }
                    None => {}
                }
                if empty {
                    root_closed |= depth == 0;
                } else {
                    depth += 1;
                }
            }
            Event::End(_) => {
                // quick-xml has matched the name against the open element already.
                if let Some((mut narrative, at)) = open
                    && at == depth
                {
                    narrative.end = after;
                    narratives.push(narrative);
                    open = None;
                }
                depth = depth.saturating_sub(1);
                root_closed |= depth == 0;
            }
            Event::Text(ref content) => {
                if depth == 0 {
                    if !content.iter().all(u8::is_ascii_whitespace) {
                        return Err(fault("text outside the root element"));
                    }
                } else if content.unescape().is_err() {
                    return Err(fault("undefined entity or bad character reference"));
                }
            }
            Event::CData(_) | Event::PI(_) => {
                if depth == 0 && matches!(event, Event::CData(_)) {
                    return Err(fault("text outside the root element"));
                }
                // fhirbolt refuses both in a narrative; leaving it to fhirbolt keeps that.
                if let Some((narrative, _)) = open.as_mut() {
                    narrative.verbatim = false;
                }
            }
            Event::Decl(_) | Event::DocType(_) | Event::Comment(_) => {}
            Event::Eof => {
                if depth > 0 {
                    return Err(Fault {
                        offset: text.len(),
                        reason: "an element is not closed",
                    });
                }
                if !root_closed {
                    return Err(Fault {
                        offset: text.len(),
                        reason: "no root element",
                    });
                }
                return Ok(narratives);
            }
        }
    }
}

/// A fixed description of a quick-xml error; its own text can quote the document.
fn reason(error: &quick_xml::Error) -> &'static str {
    match error {
        quick_xml::Error::EndEventMismatch { .. } => "end tag does not match the open element",
        quick_xml::Error::UnexpectedEof(_) => "unexpected end of the document",
        quick_xml::Error::InvalidAttr(_) => "invalid attribute",
        quick_xml::Error::EscapeError(_) => "undefined entity or bad character reference",
        quick_xml::Error::NonDecodable(_) => "not valid UTF-8",
        _ => "syntax error",
    }
}

/// Checks every attribute's syntax and escapes (fhirbolt checks only those it reads).
fn check_attributes(start: &BytesStart) -> Result<(), &'static str> {
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|_| "invalid attribute")?;
        attribute
            .unescape_value()
            .map_err(|_| "undefined entity or bad character reference")?;
    }
    Ok(())
}

fn is_xhtml(namespace: &ResolveResult) -> bool {
    *namespace == ResolveResult::Bound(Namespace(XHTML_NAMESPACE.as_bytes()))
}

/// The element is unprefixed, in the XHTML namespace, and has no prefixed attributes other
/// than `xml:` ones, so its markup means the same wherever it is copied.
fn is_plain_xhtml(start: &BytesStart, xhtml: bool) -> bool {
    start.name().prefix().is_none()
        && xhtml
        && start
            .attributes()
            .flatten()
            .all(|attribute| match attribute.key.prefix() {
                None if attribute.key.as_ref() == b"xmlns" => {
                    attribute.value.as_ref() == XHTML_NAMESPACE.as_bytes()
                }
                None => true,
                Some(prefix) => prefix.as_ref() == b"xml",
            })
}

fn declares_xhtml(start: &BytesStart) -> bool {
    start.attributes().flatten().any(|attribute| {
        attribute.key.as_ref() == b"xmlns" && attribute.value.as_ref() == XHTML_NAMESPACE.as_bytes()
    })
}

/// The issues for a document fhirbolt's strict reader refused. A lenient reading into
/// fhirbolt's generic element model keeps unknown elements, so the validator can name the
/// element at fault; otherwise fhirbolt's own message, without any values it quotes.
fn explain(text: &str, error: &fhir_codec::XmlError) -> Vec<Issue> {
    let mut issues = lenient_issues(text);
    if issues.is_empty() {
        issues.push(Issue::error(
            IssueCode::Structure,
            format!("not valid FHIR R4 XML: {}", strict_diagnostics(error)),
        ));
    }
    issues.truncate(MAX_ISSUES);
    issues
}

fn lenient_issues(text: &str) -> Vec<Issue> {
    let Some(json) = fhir_codec::xml_to_json_lenient(text) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_str::<Value>(&json) else {
        return Vec::new();
    };
    crate::validation::validate(&value)
}

/// fhirbolt's message without the document's values: serde's messages can quote them
/// (`invalid value: other "Smith", expected …`); field names stay, as they are schema.
fn strict_diagnostics(error: &fhir_codec::XmlError) -> String {
    use fhir_codec::XmlError as Error;
    match error {
        Error::Message(message) => crate::validation::redact_serde_message(message),
        Error::InvalidXml(_) | Error::InvalidXmlAttribute(_) | Error::Utf8Error(_) => {
            "malformed XML".to_owned()
        }
        Error::InvalidXmlVersion(_)
        | Error::InvalidXmlEncoding(_)
        | Error::InvalidXmlStandalone(_) => {
            "the XML declaration must be version 1.0, UTF-8, not standalone".to_owned()
        }
        Error::InvalidXmlNamespace(..) => {
            "an element or attribute is not in the FHIR (or, in a narrative, XHTML) namespace"
                .to_owned()
        }
        Error::InvalidXmlEvent(event) => format!("{event} is not allowed"),
        Error::InvalidFhirEvent { found, expected } => {
            format!("found {found} where {expected} was expected")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIV: &str = r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Seen by <b>Dr. Who</b> &amp; nurse</p></div>"#;

    fn refused(text: &str) -> Vec<Issue> {
        match xml_to_json(text) {
            Ok(value) => panic!("accepted: {value}"),
            Err(issues) => issues,
        }
    }

    fn accepted(text: &str) -> Value {
        match xml_to_json(text) {
            Ok(value) => value,
            Err(issues) => panic!("refused: {issues:?}"),
        }
    }

    fn to_xml(value: &Value) -> String {
        match json_to_xml(&value.to_string()) {
            Ok(xml) => xml,
            Err(issue) => panic!("not written: {issue:?}"),
        }
    }

    fn patient_with_narrative(div: &str) -> String {
        format!(
            r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>{div}</text><active value="true"/></Patient>"#
        )
    }

    #[test]
    fn an_unclosed_root_is_malformed() {
        let issues = refused(r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/>"#);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].code, IssueCode::Structure);
        assert!(
            issues[0].diagnostics.starts_with("malformed XML"),
            "{}",
            issues[0].diagnostics
        );
    }

    #[test]
    fn other_malformed_documents_are_refused_without_quoting_them() {
        for text in [
            r#"<Patient xmlns="http://hl7.org/fhir"><name><family value="Secret"/></Patient>"#,
            r#"<Patient xmlns="http://hl7.org/fhir"/><Patient xmlns="http://hl7.org/fhir"/>"#,
            r#"<Patient xmlns="http://hl7.org/fhir"/>Secret"#,
            r#"<Patient xmlns="http://hl7.org/fhir"><family value="Secret></Patient>"#,
            r#"<Patient xmlns="http://hl7.org/fhir"><family value="Secret" value="x"/></Patient>"#,
            "",
            "Secret",
            &patient_with_narrative(
                r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Secret</div></div>"#,
            ),
            &patient_with_narrative(r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Secret"#),
            &patient_with_narrative(
                r#"<div xmlns="http://www.w3.org/1999/xhtml"><p class=Secret>x</p></div>"#,
            ),
            &patient_with_narrative(
                r#"<div xmlns="http://www.w3.org/1999/xhtml">Secret&nbsp;</div>"#,
            ),
            r#"<!DOCTYPE Patient [<!ENTITY Secret "x">]><Patient xmlns="http://hl7.org/fhir"/>"#,
        ] {
            let issues = refused(text);
            assert_eq!(issues.len(), 1, "{text}");
            assert_eq!(issues[0].code, IssueCode::Structure, "{text}");
            assert!(
                issues[0].diagnostics.starts_with("malformed XML"),
                "{text}: {}",
                issues[0].diagnostics
            );
            assert!(!issues[0].diagnostics.contains("Secret"), "{text}");
        }
    }

    #[test]
    fn the_narrative_is_kept_as_written() {
        let value = accepted(&patient_with_narrative(DIV));
        assert_eq!(value["text"]["div"], DIV);
        assert_eq!(value["active"], true);

        let indented = "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p>Seen by <b>Dr. Who</b>\n  on <i>Monday</i>.</p>\n  <table><tr><td> a </td></tr></table>\n</div>";
        let value = accepted(&patient_with_narrative(indented));
        assert_eq!(value["text"]["div"], indented);
    }

    #[test]
    fn a_byte_order_mark_and_declaration_are_allowed() {
        let text = format!(
            "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}\n",
            patient_with_narrative(DIV)
        );
        assert_eq!(accepted(&text)["text"]["div"], DIV);
    }

    #[test]
    fn contained_narratives_are_kept_as_written() {
        let inner = r#"<div xmlns="http://www.w3.org/1999/xhtml">Inner <i>one</i></div>"#;
        let text = format!(
            r##"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>{DIV}</text><contained><Organization><id value="o"/><text><status value="generated"/>{inner}</text><name value="Clinic"/></Organization></contained><managingOrganization><reference value="#o"/></managingOrganization></Patient>"##
        );
        let value = accepted(&text);
        assert_eq!(value["text"]["div"], DIV);
        assert_eq!(value["contained"][0]["text"]["div"], inner);
        let back = accepted(&to_xml(&value));
        assert_eq!(back, value);
    }

    #[test]
    fn a_narrative_with_xml_lang_and_comments_is_kept() {
        let div = r#"<div xmlns="http://www.w3.org/1999/xhtml" xml:lang="en"><!-- note --><p lang="en">A&#160;B</p><br/></div>"#;
        let value = accepted(&patient_with_narrative(div));
        assert_eq!(value["text"]["div"], div);
    }

    #[test]
    fn the_narrative_is_written_as_stored() {
        let value = serde_json::json!({
            "resourceType": "Patient",
            "text": {"status": "generated", "div": DIV},
            "active": true,
        });
        let xml = to_xml(&value);
        assert!(xml.starts_with("<?xml"), "{xml}");
        assert!(xml.contains(DIV), "{xml}");
        assert!(!xml.contains(PLACEHOLDER_MARK), "{xml}");
        assert_eq!(accepted(&xml), value);
    }

    #[test]
    fn a_resource_without_narrative_is_written_by_fhirbolt_alone() {
        let value = serde_json::json!({"resourceType": "Patient", "id": "x", "gender": "male"});
        let xml = to_xml(&value);
        assert!(
            xml.contains("<Patient xmlns=\"http://hl7.org/fhir\">"),
            "{xml}"
        );
        assert_eq!(accepted(&xml), value);
    }

    #[test]
    fn a_prefixed_narrative_is_left_to_fhirbolt_which_refuses_it() {
        // fhirbolt accepts no `xmlns:prefix` declaration, so this is refused as before.
        let issues = refused(
            r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><h:div xmlns:h="http://www.w3.org/1999/xhtml">x</h:div></text></Patient>"#,
        );
        assert_eq!(issues[0].code, IssueCode::Structure);
    }

    #[test]
    fn unknown_elements_are_located() {
        for (text, expression) in [
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>"#,
                "Patient.foo",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><name><given value="a"/></name><name><foo value="1"/></name></Patient>"#,
                "Patient.name[1].foo",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><contained><Organization><foo value="1"/></Organization></contained></Patient>"#,
                "Patient.contained[0].foo",
            ),
        ] {
            let issues = refused(text);
            assert_eq!(issues[0].code, IssueCode::Structure, "{text}");
            assert_eq!(issues[0].expression.as_deref(), Some(expression), "{text}");
        }
    }

    #[test]
    fn unknown_elements_are_located_after_a_narrative() {
        let issues = refused(&format!(
            r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>{DIV}</text><foo value="1"/></Patient>"#
        ));
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.foo"));
    }

    #[test]
    fn fhirbolt_messages_lose_the_values() {
        let issues =
            refused(r#"<Patient xmlns="http://hl7.org/fhir"><active value="Secret"/></Patient>"#);
        assert_eq!(issues[0].code, IssueCode::Structure);
        assert!(!issues[0].diagnostics.contains("Secret"), "{issues:?}");
    }
}
