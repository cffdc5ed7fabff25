//! The fixed set of searches the benchmark times, their values taken from the generator.
//!
//! Selective searches use the reserved values of [`crate::generate::reserved`], so they
//! return the same rows at every scale (at least 1,000 patients); the others grow with the
//! data and show what a large result costs (their first page of 20).

use url::Url;

use crate::generate::{Generator, MRN_SYSTEM, invoice_id, reserved};

/// What a search fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The search itself (its first page).
    Search,
    /// The page of that number, reached by following `next` links from the first.
    Page(u32),
}

/// One search of the benchmark.
#[derive(Debug, Clone)]
pub struct Query {
    /// A short name, unique in the set.
    pub name: &'static str,
    /// The resource type searched.
    pub resource: &'static str,
    /// The parameters, not encoded.
    pub params: Vec<(String, String)>,
    /// Returns the same rows at every scale: its latency should not grow with the data.
    pub selective: bool,
    pub kind: Kind,
    /// What it exercises and what it returns.
    pub about: &'static str,
}

impl Query {
    fn new(
        name: &'static str,
        resource: &'static str,
        params: &[(&str, &str)],
        selective: bool,
        about: &'static str,
    ) -> Self {
        Query {
            name,
            resource,
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            selective,
            kind: Kind::Search,
            about,
        }
    }

    /// The search as a person reads it: `Patient?family=Þórðar` (not encoded).
    pub fn display(&self) -> String {
        let query: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let search = format!("{}?{}", self.resource, query.join("&"));
        match self.kind {
            Kind::Search => search,
            Kind::Page(n) => format!("{search}, page {n}"),
        }
    }

    /// The URL of the search (its first page) under `base` (`http://host:port/fhir`).
    pub fn url(&self, base: &Url) -> Url {
        let mut url = base.clone();
        url.path_segments_mut()
            .map(|mut segments| {
                segments.pop_if_empty().push(self.resource);
            })
            .ok();
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &self.params {
                pairs.append_pair(name, value);
            }
        }
        url
    }
}

/// Invoices with a total gross above this are about 1 % of the ordinary ones (measured on
/// the generator's data, see the test below).
pub const TOTALGROSS_ONE_PERCENT: &str = "5250";

/// The benchmark's searches, in the order they run.
pub fn standard(generator: &Generator) -> Vec<Query> {
    let family = reserved::RARE_FAMILY_PREFIX;
    let mrn = format!(
        "{MRN_SYSTEM}|{}",
        generator.mrn(reserved::IDENTIFIER_PATIENT)
    );
    let birth_low = format!("ge{}", reserved::BIRTH_WINDOW_START);
    let birth_high = format!("lt{}", reserved::BIRTH_WINDOW_END);
    let gross = format!("gt{}", reserved::BIG_BILL_THRESHOLD);
    let holiday = reserved::HOLIDAY;
    let day_after = "2023-12-26";
    let ids = [
        reserved::RARE_FAMILY[0],
        reserved::RARE_FAMILY[1],
        reserved::RARE_FAMILY[3],
    ]
    .map(|i| invoice_id(i, 1))
    .join(",");
    let account = crate::generate::account_id(reserved::ACCOUNT_PATIENT);
    let gross_one_percent = format!("gt{TOTALGROSS_ONE_PERCENT}");
    vec![
        Query::new(
            "family-prefix",
            "Patient",
            &[("family", family)],
            true,
            "string prefix; 6 Patients",
        ),
        Query::new(
            "identifier",
            "Patient",
            &[("identifier", &mrn)],
            true,
            "token system|code; 1 Patient",
        ),
        Query::new(
            "birthdate-range",
            "Patient",
            &[("birthdate", &birth_low), ("birthdate", &birth_high)],
            true,
            "date range; 5 Patients",
        ),
        Query::new(
            "gender-state",
            "Patient",
            &[
                ("gender", "female"),
                ("address-state", reserved::RARE_STATE),
            ],
            true,
            "token and string; 5 Patients",
        ),
        Query::new(
            "chain-name",
            "Invoice",
            &[("subject:Patient.name", family)],
            true,
            "chain into Patient; the rare-family Patients' Invoices",
        ),
        Query::new(
            "totalgross-high",
            "Invoice",
            &[("totalgross", &gross)],
            true,
            "Money range; 4 Invoices",
        ),
        Query::new(
            "status-date",
            "Invoice",
            &[
                ("status", "issued"),
                ("date", &format!("ge{holiday}")),
                ("date", &format!("lt{day_after}")),
            ],
            true,
            "token and date range; 4 Invoices",
        ),
        Query::new(
            "include",
            "Invoice",
            &[("_id", &ids), ("_include", "Invoice:subject")],
            true,
            "_id and _include; 3 Invoices and their 3 Patients",
        ),
        Query::new(
            "revinclude",
            "Patient",
            &[("family", family), ("_revinclude", "Invoice:subject")],
            true,
            "_revinclude; 6 Patients and their Invoices",
        ),
        Query::new(
            "has-selective",
            "Patient",
            &[
                ("family", family),
                ("_has:Invoice:subject:status", "cancelled"),
            ],
            true,
            "_has with a selective criterion; 2 Patients",
        ),
        Query::new(
            "account-reference",
            "Invoice",
            &[("account", &account)],
            true,
            "reference; one Account's Invoices",
        ),
        Query::new(
            "birthdate-month",
            "Patient",
            &[
                ("birthdate", "ge1980-01-01"),
                ("birthdate", "lt1980-02-01"),
                ("_count", "20"),
            ],
            false,
            "date range of a month: about 0.1 % of Patients",
        ),
        Query::new(
            "totalgross-1pct",
            "Invoice",
            &[("totalgross", &gross_one_percent), ("_count", "20")],
            false,
            "Money range: about 1 % of Invoices",
        ),
        Query::new(
            "has-unselective",
            "Patient",
            &[
                ("_has:Invoice:subject:status", "cancelled"),
                ("_count", "20"),
            ],
            false,
            "_has alone: about a fifth of Patients",
        ),
        Query::new(
            "sort-date",
            "Invoice",
            &[("status", "issued"), ("_sort", "-date"), ("_count", "20")],
            false,
            "_sort by date over 45 % of Invoices",
        ),
        Query::new(
            "page-1",
            "Patient",
            &[("_count", "20")],
            false,
            "every Patient, first page of 20",
        ),
        Query {
            kind: Kind::Page(50),
            ..Query::new(
                "page-50",
                "Patient",
                &[("_count", "20")],
                false,
                "every Patient, page 50 (following next links)",
            )
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{DEFAULT_SEED, Generator};

    #[test]
    fn names_are_unique_and_urls_encoded() {
        let queries = standard(&Generator::new(DEFAULT_SEED));
        assert!(queries.len() >= 12);
        let mut names: Vec<&str> = queries.iter().map(|q| q.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), queries.len());
        let base = Url::parse("http://127.0.0.1:8080/fhir").ok();
        let base = base.as_ref().map(|b| queries[0].url(b).to_string());
        assert_eq!(
            base.as_deref(),
            Some("http://127.0.0.1:8080/fhir/Patient?family=%C3%9E%C3%B3r%C3%B0ar")
        );
        assert_eq!(queries[0].display(), "Patient?family=Þórðar");
    }

    /// The threshold of `totalgross-1pct` keeps about 1 % of the ordinary invoices.
    #[test]
    fn the_one_percent_threshold() {
        let g = Generator::new(DEFAULT_SEED);
        let threshold: f64 = TOTALGROSS_ONE_PERCENT.parse().unwrap_or(0.0);
        let (mut above, mut all) = (0u64, 0u64);
        let mut grosses = Vec::new();
        for i in 1000..11_000 {
            for invoice in g.record(i).invoices {
                let gross: f64 = invoice["totalGross"]["value"]
                    .to_string()
                    .parse()
                    .unwrap_or(0.0);
                grosses.push(gross);
                all += 1;
                if gross > threshold {
                    above += 1;
                }
            }
        }
        grosses.sort_by(f64::total_cmp);
        let p99 = grosses[grosses.len() * 99 / 100];
        let per_mille = above * 1000 / all;
        assert!(
            (5..=20).contains(&per_mille),
            "{above} of {all} above {threshold}; the 99th percentile is {p99}"
        );
    }
}
