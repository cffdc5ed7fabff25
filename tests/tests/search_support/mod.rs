//! Helpers shared by `search.rs` and `search_results.rs`: building search URLs, reading
//! every page of a searchset, and small oracles over resource JSON.
//!
//! The oracles are written from the FHIR R4 search page
//! (http://hl7.org/fhir/R4/search.html), not from the server's code: they must stay obviously
//! correct on their own, so they only handle the shapes the test data has.

#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use chrono::{DateTime, Duration, NaiveDate, Utc};
use ferrum_tests::{Resp, TestServer, link};
use serde_json::Value;

/// Percent-encodes a query component, leaving the FHIR separators (`,` `|` `$` `:` `/`) and
/// a few other harmless characters as written, as a client typing the URL would.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~,|$:/@!*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `Type?name=value&...` (values as a person writes them, not encoded) as a URL path
/// relative to the base (`?name=value` as the base's absolute URL), every name and value
/// percent-encoded. `{base}` in a value is
/// replaced by the server's base URL first. Pairs are separated by `&` (no value of the
/// tests holds one).
pub fn search_path(query: &str, base: &str) -> String {
    let query = query.replace("{base}", base);
    let (path, params) = query.split_once('?').unwrap_or((query.as_str(), ""));
    let encoded: Vec<String> = params
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => format!("{}={}", encode(name), encode(value)),
            None => encode(pair),
        })
        .collect();
    // A system-level search (`?_type=...`) is relative to the base itself.
    let path = if path.is_empty() { base } else { path };
    if encoded.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", encoded.join("&"))
    }
}

/// The (name, value) pairs of such a query, `{base}` replaced.
pub fn query_pairs(query: &str, base: &str) -> Vec<(String, String)> {
    let query = query.replace("{base}", base);
    let params = query.split_once('?').map_or("", |(_, p)| p);
    params
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// `application/x-www-form-urlencoded` text of some pairs.
pub fn form_body(pairs: &[(String, String)]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        form.append_pair(name, value);
    }
    form.finish()
}

/// `Type/id` of each entry of `bundle` whose `search.mode` is `mode`, in order.
pub fn ids_with_mode(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| type_and_id(&e["resource"]))
                .collect()
        })
        .unwrap_or_default()
}

/// `Type/id` of a resource.
pub fn type_and_id(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or("?"),
        resource["id"].as_str().unwrap_or("?")
    )
}

/// The `search.mode = outcome` resources of a page.
pub fn outcome_entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "outcome")
                .map(|e| e["resource"].clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Every page of a search and what they hold.
#[derive(Debug, Clone, Default)]
pub struct Searched {
    /// The pages, first to last.
    pub pages: Vec<Value>,
    /// `Type/id` of the matches, in order over all pages.
    pub matches: Vec<String>,
    /// `Type/id` of the included resources, in order over all pages.
    pub included: Vec<String>,
    /// The first page's `total`.
    pub total: Option<u64>,
}

/// GETs `url` (relative to the base, or absolute) and follows `next` links to the end.
/// Fails with a description when a page is not a 200 searchset Bundle, or after 200 pages.
pub async fn search_all(server: &TestServer, url: &str) -> Result<Searched, String> {
    let mut out = Searched::default();
    let mut next = Some(server.url(url));
    while let Some(page_url) = next.take() {
        if out.pages.len() >= 200 {
            return Err(format!("more than 200 pages from {url}"));
        }
        let resp = server.get(&page_url).await;
        check_searchset(&resp).map_err(|e| format!("GET {page_url}: {e}"))?;
        if out.pages.is_empty() {
            out.total = resp.json["total"].as_u64();
        }
        out.matches.extend(ids_with_mode(&resp.json, "match"));
        out.included.extend(ids_with_mode(&resp.json, "include"));
        next = link(&resp.json, "next");
        out.pages.push(resp.json);
    }
    Ok(out)
}

/// `Ok` when `resp` is a 200 searchset Bundle in FHIR JSON.
pub fn check_searchset(resp: &Resp) -> Result<(), String> {
    if resp.status != 200 {
        return Err(resp.describe());
    }
    if !resp.is_fhir_json() {
        return Err(format!("not FHIR JSON: {}", resp.describe()));
    }
    if resp.json["resourceType"] != "Bundle" || resp.json["type"] != "searchset" {
        return Err(format!("not a searchset Bundle: {}", resp.describe()));
    }
    Ok(())
}

/// The duplicates of a list, each once.
pub fn duplicates(items: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut dups = std::collections::BTreeSet::new();
    for item in items {
        if !seen.insert(item) {
            dups.insert(item.clone());
        }
    }
    dups.into_iter().collect()
}

// ---------------------------------------------------------------------------------------
// Oracles over resource JSON.
// ---------------------------------------------------------------------------------------

/// Every value at a dotted path, arrays flattened at each step (`name.given`).
pub fn at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in path.split('.') {
        let mut next = Vec::new();
        for item in current {
            match item.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(found) => next.push(found),
                None => {}
            }
        }
        current = next;
    }
    current
}

/// The strings at a dotted path.
pub fn strs(value: &Value, path: &str) -> Vec<String> {
    at(value, path)
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Lower case, the accents of the test data's letters removed (a hand-written table), runs
/// of white space as one space: what "case and accent insensitive" means in the R4 string
/// search.
pub fn fold(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        let plain = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => "a",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'í' | 'ì' | 'î' | 'ï' => "i",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' => "o",
            'ú' | 'ù' | 'û' | 'ü' => "u",
            'ñ' => "n",
            'ç' => "c",
            'ß' => "ss",
            other => {
                out.push(other);
                continue;
            }
        };
        out.push_str(plain);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The string parts of every HumanName at `path`.
pub fn name_parts(resource: &Value, path: &str) -> Vec<String> {
    ["family", "given", "prefix", "suffix", "text"]
        .iter()
        .flat_map(|part| strs(resource, &format!("{path}.{part}")))
        .collect()
}

/// The string parts of every Address at `path`.
pub fn address_parts(resource: &Value, path: &str) -> Vec<String> {
    [
        "line",
        "city",
        "district",
        "state",
        "postalCode",
        "country",
        "text",
    ]
    .iter()
    .flat_map(|part| strs(resource, &format!("{path}.{part}")))
    .collect()
}

/// The default string match: one of `values` starts with `prefix`, both folded.
pub fn starts(values: &[String], prefix: &str) -> bool {
    let prefix = fold(prefix);
    values.iter().any(|v| fold(v).starts_with(&prefix))
}

/// `:contains`: one of `values` contains `part`, both folded.
pub fn contains(values: &[String], part: &str) -> bool {
    let part = fold(part);
    values.iter().any(|v| fold(v).contains(&part))
}

/// The (system, code) pairs of the Codings at `path` (a CodeableConcept's `coding`, or
/// Codings themselves).
pub fn codings(resource: &Value, path: &str) -> Vec<(Option<String>, String)> {
    at(resource, path)
        .into_iter()
        .flat_map(|v| match v.get("coding") {
            Some(Value::Array(codings)) => codings.iter().collect::<Vec<_>>(),
            _ => vec![v],
        })
        .filter_map(|coding| {
            let code = coding["code"].as_str()?;
            Some((
                coding["system"].as_str().map(str::to_owned),
                code.to_owned(),
            ))
        })
        .collect()
}

/// A token match on Codings: the code, with the system when given.
pub fn has_coding(resource: &Value, path: &str, system: Option<&str>, code: &str) -> bool {
    codings(resource, path)
        .iter()
        .any(|(s, c)| c == code && system.is_none_or(|want| s.as_deref() == Some(want)))
}

/// The texts a CodeableConcept's `:text` search sees: its text and its codings' displays.
pub fn concept_texts(resource: &Value, path: &str) -> Vec<String> {
    let mut out = strs(resource, &format!("{path}.text"));
    out.extend(strs(resource, &format!("{path}.coding.display")));
    out
}

/// The (system, value) pairs of the Identifiers at `path`.
pub fn identifiers(resource: &Value, path: &str) -> Vec<(Option<String>, Option<String>)> {
    at(resource, path)
        .into_iter()
        .map(|i| {
            (
                i["system"].as_str().map(str::to_owned),
                i["value"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// A token match on Identifiers: the value, with the system when given.
pub fn has_identifier(resource: &Value, system: Option<&str>, value: &str) -> bool {
    identifiers(resource, "identifier").iter().any(|(s, v)| {
        v.as_deref() == Some(value) && system.is_none_or(|want| s.as_deref() == Some(want))
    })
}

/// The values of the ContactPoints at `path` of one system (any when `None`).
pub fn contact_values(resource: &Value, path: &str, system: Option<&str>) -> Vec<String> {
    at(resource, path)
        .into_iter()
        .filter(|c| system.is_none_or(|want| c["system"] == want))
        .filter_map(|c| c["value"].as_str().map(str::to_owned))
        .collect()
}

/// The `reference` strings of the References at `path`.
pub fn refs(resource: &Value, path: &str) -> Vec<String> {
    strs(resource, &format!("{path}.reference"))
}

/// American Soundex of one word (letters only; `None` without a Latin letter): the first
/// letter, then the digits of the following consonants, a digit not repeated when only
/// `h` or `w` separates two letters of the same digit, padded to four characters.
pub fn soundex(word: &str) -> Option<String> {
    let letters: Vec<char> = fold(word)
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect();
    let first = *letters.first()?;
    let digit = |c: char| match c {
        'b' | 'f' | 'p' | 'v' => '1',
        'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => '2',
        'd' | 't' => '3',
        'l' => '4',
        'm' | 'n' => '5',
        'r' => '6',
        _ => '0',
    };
    let mut out = String::from(first);
    let mut last = digit(first);
    for &c in &letters[1..] {
        if c == 'h' || c == 'w' {
            continue;
        }
        let d = digit(c);
        if d != '0' && d != last {
            out.push(d);
        }
        last = d;
    }
    out.truncate(4);
    while out.len() < 4 {
        out.push('0');
    }
    Some(out)
}

/// Whether some word of `values` sounds like every word of `search` (Soundex).
pub fn sounds_like(values: &[String], search: &str) -> bool {
    let codes: Vec<String> = values
        .iter()
        .flat_map(|v| {
            v.split(|c: char| !c.is_alphabetic())
                .filter_map(soundex)
                .collect::<Vec<_>>()
        })
        .collect();
    search
        .split_whitespace()
        .filter_map(soundex)
        .all(|code| codes.contains(&code))
}

/// An instant range `[low, high)`; `None` is unbounded.
pub type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The range a FHIR date, dateTime or instant covers by its precision: `1974` is the whole
/// year, `1974-12` the month, `1974-12-25` the day (all in UTC), a time to the second is
/// that second, with `.fff` the millisecond. A value with a time has a zone.
pub fn date_range(text: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = |y: i32, m: u32, d: u32| {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap_or_else(|| panic!("bad date {text}"))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_else(|| panic!("bad date {text}"))
            .and_utc()
    };
    let number = |range: std::ops::Range<usize>| -> u32 {
        text[range]
            .parse()
            .unwrap_or_else(|_| panic!("bad date {text}"))
    };
    match text.len() {
        4 => {
            let y = number(0..4) as i32;
            (day(y, 1, 1), day(y + 1, 1, 1))
        }
        7 => {
            let (y, m) = (number(0..4) as i32, number(5..7));
            let end = if m == 12 {
                day(y + 1, 1, 1)
            } else {
                day(y, m + 1, 1)
            };
            (day(y, m, 1), end)
        }
        10 => {
            let start = day(number(0..4) as i32, number(5..7), number(8..10));
            (start, start + Duration::days(1))
        }
        _ => {
            let instant = DateTime::parse_from_rfc3339(text)
                .unwrap_or_else(|e| panic!("bad dateTime {text}: {e}"))
                .with_timezone(&Utc);
            let fraction_digits = text.split_once('.').map_or(0, |(_, rest)| {
                rest.chars().take_while(char::is_ascii_digit).count()
            });
            let step = match fraction_digits {
                0 => Duration::seconds(1),
                1 => Duration::milliseconds(100),
                2 => Duration::milliseconds(10),
                _ => Duration::milliseconds(1),
            };
            (instant, instant + step)
        }
    }
}

/// The ranges of the dates at `path` (date, dateTime or instant values, or Periods).
pub fn date_ranges(resource: &Value, path: &str) -> Vec<Range> {
    at(resource, path)
        .into_iter()
        .filter_map(|v| match v {
            Value::String(text) => {
                let (low, high) = date_range(text);
                Some((Some(low), Some(high)))
            }
            Value::Object(period) => {
                let start = period.get("start").and_then(Value::as_str);
                let end = period.get("end").and_then(Value::as_str);
                if start.is_none() && end.is_none() {
                    return None;
                }
                Some((start.map(|s| date_range(s).0), end.map(|e| date_range(e).1)))
            }
            _ => None,
        })
        .collect()
}

/// The R4 date prefixes, in their own words, over the search range `[sl, sh)` and a
/// target range `[tl, th)` (open ends unbounded):
///
/// - eq: the search range fully contains the target range; ne: it does not;
/// - gt: the range above the search value overlaps the target (`th > sh`); lt: the range
///   below does (`tl < sl`); ge: gt or eq; le: lt or eq;
/// - sa: the target starts after the search range ends (`tl >= sh`); eb: it ends before
///   the search range starts (`th <= sl`).
///
/// `ap` is left out: its width is the server's choice, so tests use hand-written sets.
pub fn date_prefix_matches(search: &str, target: &Range) -> bool {
    let (prefix, value) = split_prefix(search);
    let (sl, sh) = date_range(value);
    let (tl, th) = *target;
    let contained = tl.is_some_and(|l| l >= sl) && th.is_some_and(|h| h <= sh);
    let above = th.is_none_or(|h| h > sh);
    let below = tl.is_none_or(|l| l < sl);
    match prefix {
        "eq" => contained,
        "ne" => !contained,
        "gt" => above,
        "lt" => below,
        "ge" => contained || above,
        "le" => contained || below,
        "sa" => tl.is_some_and(|l| l >= sh),
        "eb" => th.is_some_and(|h| h <= sl),
        other => panic!("no oracle for prefix {other}"),
    }
}

/// Whether a date at `path` of `resource` matches `search` (`[prefix]date`).
pub fn date_is(resource: &Value, path: &str, search: &str) -> bool {
    date_ranges(resource, path)
        .iter()
        .any(|range| date_prefix_matches(search, range))
}

/// `("ge", "1974")` from `ge1974`; `eq` when no prefix is written.
pub fn split_prefix(search: &str) -> (&str, &str) {
    const PREFIXES: [&str; 9] = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];
    match PREFIXES.iter().find(|p| search.starts_with(**p)) {
        Some(prefix) => (prefix, &search[2..]),
        None => ("eq", search),
    }
}
