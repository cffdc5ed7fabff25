//! Bundle builders (http://hl7.org/fhir/R4/bundle.html).
//!
//! Entries carry stored resources as raw JSON text, so a page of history is written out
//! without parsing each resource again.

use serde::Serialize;
use serde_json::value::RawValue;

/// A Bundle of type `history` or `searchset`.
#[derive(Debug, Serialize)]
pub struct Bundle {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry>,
}

/// `Bundle.link`.
#[derive(Debug, Serialize)]
pub struct Link {
    pub relation: &'static str,
    pub url: String,
}

/// `Bundle.entry`.
#[derive(Debug, Serialize)]
pub struct Entry {
    #[serde(rename = "fullUrl")]
    pub full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<EntrySearch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<EntryRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<EntryResponse>,
}

/// `Bundle.entry.search`: why an entry is in a searchset.
#[derive(Debug, Serialize)]
pub struct EntrySearch {
    /// `match`, `include` or `outcome`.
    pub mode: &'static str,
}

/// `Bundle.entry.request`.
#[derive(Debug, Serialize)]
pub struct EntryRequest {
    pub method: &'static str,
    pub url: String,
}

/// `Bundle.entry.response`.
#[derive(Debug, Serialize)]
pub struct EntryResponse {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(rename = "lastModified", skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Bundle {
    /// A `history` Bundle.
    pub fn history(total: Option<u64>, link: Vec<Link>, entry: Vec<Entry>) -> Self {
        Bundle {
            resource_type: "Bundle",
            kind: "history",
            total,
            link,
            entry,
        }
    }

    /// A `searchset` Bundle.
    pub fn searchset(total: Option<u64>, link: Vec<Link>, entry: Vec<Entry>) -> Self {
        Bundle {
            resource_type: "Bundle",
            kind: "searchset",
            total,
            link,
            entry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_bundle_embeds_raw_resources() {
        let raw = RawValue::from_string(r#"{"resourceType":"Patient","id":"a"}"#.into()).ok();
        let bundle = Bundle::history(
            Some(1),
            vec![],
            vec![Entry {
                full_url: "http://x/fhir/Patient/a".into(),
                resource: raw,
                search: None,
                request: Some(EntryRequest {
                    method: "POST",
                    url: "Patient".into(),
                }),
                response: None,
            }],
        );
        let text = serde_json::to_string(&bundle).unwrap_or_default();
        assert!(
            text.contains(r#""resource":{"resourceType":"Patient","id":"a"}"#),
            "{text}"
        );
        assert!(!text.contains("\"link\""));
    }
}
