//! The Markdown report of a run directory: `load.jsonl` (one [`LoadReport`] per scale),
//! `queries.jsonl` (one [`Measurement`] per search and scale), `explain.json` (the
//! [`Plans`] of the final pass, if it ran) and `meta.json` (what `bench/search` recorded
//! about the machine and the settings).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::explain::Plans;
use crate::load::LoadReport;
use crate::measure::Measurement;

/// Selective searches: p50 at the largest scale at most this times p50 at the smallest.
pub const SCALE_RATIO_TARGET: f64 = 1.5;
/// Deep pages: p50 of page 50 at most this times p50 of page 1.
pub const PAGE_RATIO_TARGET: f64 = 1.5;

/// The report of the run in `dir`.
pub fn report(dir: &Path) -> anyhow::Result<String> {
    let loads: Vec<LoadReport> = read_lines(&dir.join("load.jsonl"))?;
    let measurements: Vec<Measurement> = read_lines(&dir.join("queries.jsonl"))?;
    let plans: Option<Vec<Plans>> = read_json(&dir.join("explain.json"))?;
    let meta: Option<Value> = read_json(&dir.join("meta.json"))?;
    Ok(render(
        &loads,
        &measurements,
        plans.as_deref(),
        meta.as_ref(),
    ))
}

fn read_lines<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("{}", path.display())))
        .collect()
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    Ok(Some(
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?,
    ))
}

/// `1000` → `1k`.
pub fn scale_label(scale: u64) -> String {
    if scale >= 1000 && scale % 1000 == 0 {
        format!("{}k", scale / 1000)
    } else {
        scale.to_string()
    }
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (n, c) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rows(m: &Measurement) -> String {
    if m.error.is_some() {
        return "error".to_string();
    }
    let mut text = thousands(m.matches.unwrap_or(0));
    if let Some(includes) = m.includes.filter(|&i| i > 0) {
        let _ = write!(text, " + {} incl.", thousands(includes));
    }
    if let Some(total) = m.total {
        let _ = write!(text, " of {}", thousands(total));
    } else if m.has_next == Some(true) {
        text.push_str(", more");
    }
    text
}

fn latency(m: Option<&Measurement>) -> String {
    match m {
        None => "—".to_string(),
        Some(m) if m.error.is_some() => "error".to_string(),
        Some(m) => match (m.p50_ms, m.p99_ms) {
            (Some(p50), Some(p99)) => format!("{} / {}", ms(p50), ms(p99)),
            _ => "—".to_string(),
        },
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// The report's Markdown.
pub fn render(
    loads: &[LoadReport],
    measurements: &[Measurement],
    plans: Option<&[Plans]>,
    meta: Option<&Value>,
) -> String {
    let mut out = String::new();
    if let Some(meta) = meta {
        let field = |name: &str| meta[name].as_str().unwrap_or("?").to_string();
        let _ = writeln!(
            out,
            "Run of {} on {}.\n\n{}; server commit {}; {}; load average before the run: {}.\n",
            field("date"),
            field("machine"),
            field("settings"),
            field("commit"),
            field("pg"),
            field("loadavg"),
        );
    }

    if !loads.is_empty() {
        let _ = writeln!(
            out,
            "#### Load: `PUT [type]/[id]`, {} requests in flight\n",
            loads[0].concurrency
        );
        let _ = writeln!(
            out,
            "| patients | resources added | seconds | resources/s | Patient/s | Account/s | Invoice/s | retried |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for load in loads {
            let rate =
                |rtype: &str| match (load.resources.get(rtype), load.seconds_by_type.get(rtype)) {
                    (Some(&n), Some(&s)) if s > 0.0 => thousands((n as f64 / s).round() as u64),
                    _ => "—".to_string(),
                };
            let _ = writeln!(
                out,
                "| {} → {} | {} | {:.1} | {} | {} | {} | {} | {} |",
                thousands(load.from),
                thousands(load.to),
                thousands(load.total()),
                load.seconds,
                thousands((load.total() as f64 / load.seconds.max(1e-9)).round() as u64),
                rate("Patient"),
                rate("Account"),
                rate("Invoice"),
                load.retries
            );
        }
        out.push('\n');
    }

    let scales: Vec<u64> = measurements
        .iter()
        .map(|m| m.scale)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for m in measurements {
        if !names.contains(&m.name.as_str()) {
            names.push(&m.name);
        }
    }
    let find = |name: &str, scale: u64| {
        measurements
            .iter()
            .find(|m| m.name == name && m.scale == scale)
    };
    let (smallest, largest) = (
        scales.first().copied().unwrap_or(0),
        scales.last().copied().unwrap_or(0),
    );
    let ratio_label = format!("{} / {}", scale_label(largest), scale_label(smallest));

    if !names.is_empty() {
        let _ = writeln!(
            out,
            "#### Searches: latency p50 / p99 in ms (one client, sequential requests)\n"
        );
        let mut header = "| name | search | selective | rows |".to_string();
        let mut rule = "|---|---|:---:|---|".to_string();
        for &scale in &scales {
            let _ = write!(header, " {} |", scale_label(scale));
            rule.push_str("---:|");
        }
        let compare = scales.len() > 1;
        if compare {
            let _ = writeln!(
                out,
                "{header} p50 {ratio_label} | target ≤ {SCALE_RATIO_TARGET} |\n{rule}---:|:---:|"
            );
        } else {
            let _ = writeln!(out, "{header}\n{rule}");
        }
        let mut met = 0;
        let mut selective = 0;
        for name in &names {
            let Some(first) = measurements.iter().find(|m| m.name == *name) else {
                continue;
            };
            let row_counts: Vec<String> = scales
                .iter()
                .map(|&s| find(name, s).map_or("—".to_string(), rows))
                .collect();
            let distinct: BTreeSet<&String> = row_counts.iter().collect();
            let row_text = if distinct.len() == 1 {
                row_counts[0].clone()
            } else {
                row_counts.join(" / ")
            };
            let mut line = format!(
                "| {} | `{}` | {} | {} |",
                name,
                first.search.replace('|', "\\|"),
                if first.selective { "yes" } else { "no" },
                row_text.replace('|', "\\|")
            );
            for &scale in &scales {
                let _ = write!(line, " {} |", latency(find(name, scale)));
            }
            let ratio = match (
                find(name, smallest).and_then(|m| m.p50_ms),
                find(name, largest).and_then(|m| m.p50_ms),
            ) {
                (Some(low), Some(high)) if low > 0.0 && scales.len() > 1 => Some(high / low),
                _ => None,
            };
            let ratio_text = ratio.map_or("—".to_string(), |r| format!("{r:.2}"));
            let target = if !first.selective {
                "—"
            } else {
                selective += 1;
                match ratio {
                    Some(r) => {
                        if r <= SCALE_RATIO_TARGET {
                            met += 1;
                        }
                        verdict(r <= SCALE_RATIO_TARGET)
                    }
                    None => "**no figure**",
                }
            };
            if compare {
                let _ = writeln!(out, "{line} {ratio_text} | {target} |");
            } else {
                let _ = writeln!(out, "{line}");
            }
        }
        if compare {
            let _ = writeln!(
                out,
                "\nSelective searches meeting the target: {met} of {selective}."
            );
        } else {
            let _ = writeln!(
                out,
                "\nOne scale measured: the scale target needs two (`BENCH_SCALES`)."
            );
        }

        let errors: BTreeSet<(String, String)> = measurements
            .iter()
            .filter_map(|m| {
                m.error
                    .as_ref()
                    .map(|e| (m.name.clone(), format!("{} ({})", e, scale_label(m.scale))))
            })
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out, "\nErrors:\n");
            for (name, error) in errors {
                let _ = writeln!(out, "- `{name}`: {error}");
            }
        }
        out.push('\n');
    }

    if names.contains(&"page-1") && names.contains(&"page-50") {
        let _ = writeln!(
            out,
            "#### Deep pages: `Patient?_count=20`, page 50 (following `next` links) against page 1\n"
        );
        let _ = writeln!(
            out,
            "| patients | page 1 p50 / p99 ms | page 50 p50 / p99 ms | page 50 / page 1 (p50) | target ≤ {PAGE_RATIO_TARGET} |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|:---:|");
        for &scale in &scales {
            let (first, fiftieth) = (find("page-1", scale), find("page-50", scale));
            let ratio = match (
                first.and_then(|m| m.p50_ms),
                fiftieth.and_then(|m| m.p50_ms),
            ) {
                (Some(a), Some(b)) if a > 0.0 => Some(b / a),
                _ => None,
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                scale_label(scale),
                latency(first),
                latency(fiftieth),
                ratio.map_or("—".to_string(), |r| format!("{r:.2}")),
                ratio.map_or("**no figure**", |r| verdict(r <= PAGE_RATIO_TARGET))
            );
        }
        out.push('\n');
    }

    if let Some(plans) = plans {
        let runs = plans.iter().map(|p| p.runs.len()).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "#### Plans (auto_explain at {} patients: each search run {runs} times on one connection; `explain.txt` has the plans)\n",
            thousands(largest)
        );
        let _ = writeln!(
            out,
            "| name | selective | run 1: ms in PostgreSQL, plan | run {runs}: ms, plan | scans of `search_*` indexes (run {runs}) | sequential scans (run {runs}) | rows found through a value index |"
        );
        let _ = writeln!(out, "|---|:---:|---:|---:|---|---|:---:|");
        for plan in plans {
            let selective = measurements
                .iter()
                .find(|m| m.name == plan.name)
                .is_some_and(|m| m.selective);
            let list = |items: &[String]| {
                if items.is_empty() {
                    "none".to_string()
                } else {
                    items
                        .iter()
                        .map(|i| format!("`{i}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            let run = |run: Option<&crate::explain::Run>| match run {
                Some(r) if r.statements > 0 => format!(
                    "{} {}",
                    ms(r.ms),
                    if r.generic { "generic" } else { "custom" }
                ),
                _ => "no statement".to_string(),
            };
            let last = plan.last();
            // A value index (`search_terms_terms`, `search_date_range_first`, ...) finds the rows,
            // or for `_id` the unique index of `resources (res_type, id)`; a `*_res` index
            // only looks up the rows of resources found otherwise.
            let by_value = last.is_some_and(|r| {
                r.search_index_scans
                    .iter()
                    .any(|scan| !scan.ends_with("_res"))
                    || r.other_index_scans
                        .iter()
                        .any(|scan| scan.ends_with(" resources_res_type_id_key"))
            });
            let uses = if last.is_none_or(|r| r.statements == 0) {
                "—"
            } else if by_value {
                "yes"
            } else if plan.uses_search_index() {
                if selective {
                    "**`_res` only**"
                } else {
                    "`_res` only"
                }
            } else if selective {
                "**no**"
            } else {
                "no"
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}{} | {} | {} | {} |",
                plan.name,
                if selective { "yes" } else { "no" },
                run(plan.first()),
                run(last),
                if plan.plan_changed {
                    " (other plan)"
                } else {
                    ""
                },
                list(last.map_or(&[][..], |r| &r.search_index_scans[..])),
                list(last.map_or(&[][..], |r| &r.seq_scans[..])),
                uses
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn m(name: &str, scale: u64, p50: f64, selective: bool) -> Measurement {
        Measurement {
            scale,
            name: name.into(),
            search: format!("Patient?{name}=x|y"),
            selective,
            error: None,
            runs: 100,
            p50_ms: Some(p50),
            p99_ms: Some(p50 * 2.0),
            mean_ms: Some(p50),
            min_ms: Some(p50),
            max_ms: Some(p50 * 3.0),
            matches: Some(6),
            includes: Some(0),
            total: None,
            has_next: Some(false),
            bytes: Some(100),
        }
    }

    #[test]
    fn tables_with_ratios_and_verdicts() {
        let mut failing = m("b", 100_000, 0.0, true);
        failing.error = Some("405 Method Not Allowed: not-supported".into());
        failing.p50_ms = None;
        let measurements = vec![
            m("a", 1000, 1.0, true),
            m("a", 100_000, 1.2, true),
            m("b", 1000, 1.0, true),
            failing,
            m("page-1", 1000, 2.0, false),
            m("page-50", 1000, 4.0, false),
        ];
        let loads = vec![LoadReport {
            from: 0,
            to: 1000,
            concurrency: 16,
            seconds: 2.0,
            resources: BTreeMap::from([("Patient".to_string(), 1000)]),
            seconds_by_type: BTreeMap::from([("Patient".to_string(), 1.0)]),
            bytes: 1,
            retries: 0,
        }];
        let text = render(&loads, &measurements, None, None);
        assert!(
            text.contains("| 0 → 1,000 | 1,000 | 2.0 | 500 | 1,000 |"),
            "{text}"
        );
        assert!(text.contains("| 1.20 | met |"), "{text}");
        assert!(text.contains("| error | — | **no figure** |"), "{text}");
        assert!(text.contains("Patient?a=x\\|y"), "{text}");
        assert!(
            text.contains("| 1k | 2.00 / 4.00 | 4.00 / 8.00 | 2.00 | **not met** |"),
            "{text}"
        );
        assert!(
            text.contains("- `b`: 405 Method Not Allowed: not-supported (100k)"),
            "{text}"
        );
    }
}
