//! The plans PostgreSQL chose for the server's search statements, from its `auto_explain`
//! module: `bench/search` turns the module on for the bench database, restarts the server
//! (the setting applies to new connections), and [`pass`] runs every search a few times,
//! each run preceded by a marker statement from `psql` on the same database. The marker's
//! own plan lands in the log with its text (`select 'search-bench query: NAME run K'`), so
//! [`explain`] attributes the plans logged after it, up to the next marker, to that run.
//!
//! Several runs, because the server's statements are prepared: PostgreSQL plans the first
//! five executions on a connection with the values (custom plans), and may then switch to
//! a generic plan, made without them (its conditions show `$1`), which the timed runs get
//! from then on. Sequential requests reuse one pooled connection, so the last of ten runs
//! shows the plan the timed runs got, the first the plan a fresh connection gets.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::measure::{Failure, bundle_counts, get, target_url};
use crate::queries::{Kind, Query};

/// The marker's text: `select 'search-bench query: NAME run K'`.
const MARKER: &str = "search-bench query: ";

/// Runs each search of `queries` `runs` times, each run after a marker statement
/// (`psql -d db`). Returns the searches that failed, with why.
pub async fn pass(
    client: &reqwest::Client,
    base: &Url,
    queries: &[Query],
    db: &str,
    runs: u32,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut failures = Vec::new();
    // The first search of a new server does some one-off work (its cursor key, the
    // parameter ids): done here, under a marker left out.
    if let Some(first) = queries.first() {
        marker(db, "warm-up:setup").await?;
        get(client, first.url(base).as_str()).await.ok();
    }
    'queries: for query in queries {
        if let Kind::Page(_) = query.kind {
            // Following the links is logged under a marker of its own, left out.
            marker(db, &format!("{}:setup", query.name)).await?;
        }
        let url = match target_url(client, base, query).await {
            Ok(url) => url,
            Err(Failure(error)) => {
                failures.push((query.name.to_string(), error));
                continue;
            }
        };
        for run in 1..=runs.max(1) {
            marker(db, &format!("{} run {run}", query.name)).await?;
            let result = match get(client, &url).await {
                Ok(body) => bundle_counts(&body).map(|_| ()),
                Err(failure) => Err(failure),
            };
            if let Err(Failure(error)) = result {
                failures.push((query.name.to_string(), error));
                continue 'queries;
            }
        }
    }
    marker(db, "end").await?;
    Ok(failures)
}

/// Runs the marker statement of `text` through `psql` (connection from the PG*
/// environment variables).
async fn marker(db: &str, text: &str) -> anyhow::Result<()> {
    let sql = format!("select '{MARKER}{}'", text.replace('\'', ""));
    let status = tokio::process::Command::new("psql")
        .args(["-qAtX", "-d", db, "-c", &sql])
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "psql failed on the marker {text}");
    Ok(())
}

/// The statements of one run of a search.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Run {
    pub run: u32,
    /// Statements explained.
    pub statements: usize,
    /// Their execution time in PostgreSQL, as auto_explain logged it.
    pub ms: f64,
    /// Whether a plan is generic (a condition compares with `$n`).
    pub generic: bool,
    /// `Index Scan search_…` and the like, each once.
    pub search_index_scans: Vec<String>,
    /// Index scans of other indexes (`resources_pkey`, ...).
    pub other_index_scans: Vec<String>,
    /// Tables read by `Seq Scan`.
    pub seq_scans: Vec<String>,
    /// The logged entries (header line and plan), as logged.
    #[serde(skip)]
    pub entries: Vec<String>,
    /// The plan nodes, without figures: equal shapes are the same plans.
    #[serde(skip)]
    pub shape: Vec<String>,
}

/// The runs of one search.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plans {
    pub name: String,
    pub runs: Vec<Run>,
    /// Whether the last run's plans differ from the first's.
    pub plan_changed: bool,
}

impl Plans {
    pub fn first(&self) -> Option<&Run> {
        self.runs.first()
    }

    /// The plans the timed runs got.
    pub fn last(&self) -> Option<&Run> {
        self.runs.last()
    }

    /// Whether the last run scans a `search_*` index.
    pub fn uses_search_index(&self) -> bool {
        self.last()
            .is_some_and(|r| !r.search_index_scans.is_empty())
    }
}

/// The plans of each marked run in `log` (the slice of the PostgreSQL log written during
/// the pass), from sessions on database `db`.
pub fn explain(log: &str, db: &str) -> Vec<Plans> {
    let database = format!("@{db} ");
    let mut result: Vec<Plans> = Vec::new();
    let mut current = false;
    for entry in entries(log) {
        let header = entry.lines().next().unwrap_or("");
        if !header.contains("plan:") || !header.contains(&database) {
            continue;
        }
        if let Some(text) = marker_text(&entry) {
            current = false;
            let Some((name, run)) = text.rsplit_once(" run ") else {
                continue;
            };
            let Ok(run) = run.parse::<u32>() else {
                continue;
            };
            if result.last().is_none_or(|p| p.name != name) {
                result.push(Plans {
                    name: name.to_string(),
                    ..Plans::default()
                });
            }
            if let Some(plans) = result.last_mut() {
                plans.runs.push(Run {
                    run,
                    ..Run::default()
                });
                current = true;
            }
            continue;
        }
        if !current {
            continue;
        }
        let Some(run) = result.last_mut().and_then(|p| p.runs.last_mut()) else {
            continue;
        };
        add_statement(run, entry);
    }
    for plans in &mut result {
        plans.plan_changed = match (plans.first(), plans.last()) {
            (Some(first), Some(last)) => first.shape != last.shape,
            _ => false,
        };
    }
    result
}

fn add_statement(run: &mut Run, entry: String) {
    let header = entry.lines().next().unwrap_or("");
    if let Some(ms) = after(header, "duration: ").and_then(|d| d.parse::<f64>().ok()) {
        run.ms += ms;
    }
    let (mut search, mut other, mut seq) = (
        BTreeSet::from_iter(run.search_index_scans.drain(..)),
        BTreeSet::from_iter(run.other_index_scans.drain(..)),
        BTreeSet::from_iter(run.seq_scans.drain(..)),
    );
    for line in entry.lines().skip(1) {
        let trimmed = line.trim_start();
        if trimmed.starts_with("Query Text:") || trimmed.starts_with("Query Parameters:") {
            continue;
        }
        if (trimmed.contains("Cond:") || trimmed.contains("Filter:")) && has_parameter(trimmed) {
            run.generic = true;
        }
        if let Some(node) = trimmed
            .split("  (cost=")
            .next()
            .filter(|_| line.contains("(cost="))
        {
            run.shape.push(node.to_string());
        }
        if let Some((kind, index)) = index_scan(line) {
            let scan = format!("{kind} {index}");
            if index.starts_with("search_") {
                search.insert(scan);
            } else {
                other.insert(scan);
            }
        } else if let Some(table) = after(line, "Seq Scan on ") {
            seq.insert(table.to_string());
        }
    }
    run.search_index_scans = search.into_iter().collect();
    run.other_index_scans = other.into_iter().collect();
    run.seq_scans = seq.into_iter().collect();
    run.statements += 1;
    run.entries.push(entry);
}

/// Whether `text` holds a parameter reference `$1`, `$2`, ...
fn has_parameter(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

/// The log's entries: a line that does not start with white space opens one, the lines
/// that do (the plan) continue it.
fn entries(log: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in log.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = entries.last_mut() {
                last.push('\n');
                last.push_str(line);
            }
        } else {
            entries.push(line.to_string());
        }
    }
    entries
}

fn marker_text(entry: &str) -> Option<&str> {
    let text = entry
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("Query Text: "))?;
    let rest = text.split(MARKER).nth(1)?;
    rest.split('\'').next()
}

/// The first word after `prefix` in `line`.
fn after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let start = line.find(prefix)? + prefix.len();
    line[start..].split_whitespace().next()
}

/// The kind of index scan and the index in a plan line.
fn index_scan(line: &str) -> Option<(&'static str, &str)> {
    for (kind, prefix) in [
        ("Index Only Scan", "Index Only Scan using "),
        ("Index Only Scan", "Index Only Scan Backward using "),
        ("Index Scan", "Index Scan using "),
        ("Index Scan", "Index Scan Backward using "),
        ("Bitmap Index Scan", "Bitmap Index Scan on "),
    ] {
        if let Some(index) = after(line, prefix) {
            return Some((kind, index));
        }
    }
    None
}

/// The plans as text, one section per search: its first run and its last.
pub fn render(plans: &[Plans], queries: &[Query]) -> String {
    let mut out = String::new();
    for p in plans {
        let search = queries
            .iter()
            .find(|q| q.name == p.name)
            .map(Query::display)
            .unwrap_or_default();
        out.push_str(&format!("==== {}: {search}\n", p.name));
        let mut shown: Vec<&Run> = p.first().into_iter().collect();
        if let Some(last) = p.last().filter(|_| p.runs.len() > 1) {
            shown.push(last);
        }
        for run in shown {
            out.push_str(&format!(
                "-- run {} of {}: {} statement(s), {:.3} ms in PostgreSQL, {} plan\n\
                 search_* index scans: {}\nother index scans: {}\nseq scans: {}\n\n",
                run.run,
                p.runs.len(),
                run.statements,
                run.ms,
                if run.generic { "generic" } else { "custom" },
                list(&run.search_index_scans),
                list(&run.other_index_scans),
                list(&run.seq_scans)
            ));
            for entry in &run.entries {
                out.push_str(entry);
                out.push_str("\n\n");
            }
        }
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-11-28 10:00:00.001 UTC [10] ferrum@ferrum_search_bench LOG:  duration: 0.010 ms  plan:
\tQuery Text: select 'search-bench query: family-prefix run 1'
\tResult  (cost=0.00..0.01 rows=1 width=32) (actual time=0.001..0.001 rows=1 loops=1)
2026-11-28 10:00:00.002 UTC [11] ferrum@other_db LOG:  duration: 0.010 ms  plan:
\tQuery Text: select 1
\tSeq Scan on elsewhere  (cost=0.00..1.00 rows=1 width=4)
2026-11-28 10:00:00.003 UTC [12] ferrum@ferrum_search_bench LOG:  duration: 0.210 ms  plan:
\tQuery Text: select r.content from resources r where ...
\tNested Loop  (cost=4.5..20.1 rows=3 width=32) (actual time=0.05..0.09 rows=6 loops=1)
\t  ->  Index Only Scan using search_string_value on search_string s  (cost=0.42..8.44 rows=3 width=8)
\t        Index Cond: ((param = 73) AND (normalized >= 'thordar'::text))
\t  ->  Index Scan using resources_pkey on resources r  (cost=0.42..4.44 rows=1 width=32)
2026-11-28 10:00:00.004 UTC [10] ferrum@ferrum_search_bench LOG:  duration: 0.010 ms  plan:
\tQuery Text: select 'search-bench query: family-prefix run 2'
\tResult  (cost=0.00..0.01 rows=1 width=32)
2026-11-28 10:00:00.005 UTC [12] ferrum@ferrum_search_bench LOG:  duration: 3.500 ms  plan:
\tQuery Text: select r.content from resources r where ...
\tMerge Join  (cost=4.5..20.1 rows=3 width=32) (actual time=0.05..0.09 rows=6 loops=1)
\t  ->  Index Scan using search_string_res on search_string s  (cost=0.42..8.44 rows=3 width=8)
\t        Filter: (normalized >= $1)
\t  ->  Seq Scan on resources r  (cost=0.42..4.44 rows=1 width=32)
2026-11-28 10:00:00.006 UTC [10] ferrum@ferrum_search_bench LOG:  duration: 0.010 ms  plan:
\tQuery Text: select 'search-bench query: page-50:setup'
\tResult  (cost=0.00..0.01 rows=1 width=32)
2026-11-28 10:00:00.007 UTC [12] ferrum@ferrum_search_bench LOG:  duration: 3.000 ms  plan:
\tQuery Text: select ... page
\tSeq Scan on resources r  (cost=0.00..100.00 rows=1000 width=32)
2026-11-28 10:00:00.008 UTC [10] ferrum@ferrum_search_bench LOG:  duration: 0.010 ms  plan:
\tQuery Text: select 'search-bench query: page-50 run 1'
\tResult  (cost=0.00..0.01 rows=1 width=32)
2026-11-28 10:00:00.009 UTC [12] ferrum@ferrum_search_bench LOG:  duration: 0.300 ms  plan:
\tQuery Text: select ... cursor
\tLimit  (cost=0.00..4.00 rows=20 width=0)
\t  ->  Bitmap Heap Scan on search_date d  (cost=0.00..4.00 rows=20 width=0)
\t        ->  Bitmap Index Scan on search_date_low  (cost=0.00..4.00 rows=20 width=0)
\t  ->  Seq Scan on search_params p  (cost=0.00..4.00 rows=20 width=0)
2026-11-28 10:00:00.010 UTC [10] ferrum@ferrum_search_bench LOG:  duration: 0.010 ms  plan:
\tQuery Text: select 'search-bench query: end'
\tResult  (cost=0.00..0.01 rows=1 width=32)
";

    #[test]
    fn plans_are_attributed_to_the_marked_run() {
        let plans = explain(LOG, "ferrum_search_bench");
        assert_eq!(plans.len(), 2);
        let family = &plans[0];
        assert_eq!(family.name, "family-prefix");
        assert_eq!(family.runs.len(), 2);
        let (first, last) = (&family.runs[0], &family.runs[1]);
        assert_eq!(first.statements, 1);
        assert_eq!(
            first.search_index_scans,
            ["Index Only Scan search_string_value"]
        );
        assert_eq!(first.other_index_scans, ["Index Scan resources_pkey"]);
        assert!(first.seq_scans.is_empty());
        assert!(!first.generic);
        assert!((first.ms - 0.21).abs() < 1e-9);
        assert!(last.generic);
        assert_eq!(last.seq_scans, ["resources"]);
        assert_eq!(last.search_index_scans, ["Index Scan search_string_res"]);
        assert!(family.plan_changed);
        assert!(family.uses_search_index());

        let page = &plans[1];
        assert_eq!(page.name, "page-50");
        assert_eq!(page.runs.len(), 1);
        assert_eq!(page.runs[0].statements, 1);
        assert_eq!(
            page.runs[0].search_index_scans,
            ["Bitmap Index Scan search_date_low"]
        );
        assert_eq!(page.runs[0].seq_scans, ["search_params"]);
        assert!(!page.plan_changed);
        let text = render(&plans, &[]);
        assert!(text.contains("==== page-50"), "{text}");
        assert!(
            text.contains("-- run 2 of 2: 1 statement(s), 3.500 ms in PostgreSQL, generic plan"),
            "{text}"
        );
    }
}
