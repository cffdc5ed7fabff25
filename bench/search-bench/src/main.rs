//! The measuring side of `bench/search` (see `bench/README.md`, "Search"). Each command
//! prints JSON on stdout (one object per line) and progress on stderr; `bench/search`
//! provisions the database and the server, and runs `VACUUM ANALYZE` between the steps.
//!
//! ```text
//! search-bench generate FROM TO             NDJSON of the Organizations and Practitioners
//!                                           (when FROM is 0) and Patients FROM..TO with
//!                                           their Accounts and Invoices
//! search-bench load BASE_URL FROM TO        PUT them into the server at BASE_URL
//! search-bench queries                      the searches, one per line
//! search-bench measure BASE_URL SCALE       time every search
//! search-bench explain-pass BASE_URL DB     run each selective search and the pages ten
//!                                           times, each run after a marker statement on
//!                                           DB (psql), for auto_explain
//! search-bench explain-extract LOG DB TXT   the plans of each search in LOG (the slice of
//!                                           the PostgreSQL log the pass wrote): text to
//!                                           TXT, a summary on stdout
//! search-bench report RUN_DIR               the Markdown tables of a run
//! search-bench bundles FROM COUNT           NDJSON of COUNT transaction Bundles of the
//!                                           Patients from FROM on (bench/transaction)
//! search-bench ingest BASE_URL FROM COUNT CLIENTS
//!                                           POST those Bundles to BASE_URL, CLIENTS at a
//!                                           time, and check every answer
//! search-bench write-cost DATABASE_URL PATIENT_JSON
//!                                           creates through the store with and without
//!                                           the search index, on an empty database
//!                                           (bench/write-cost)
//! ```
//!
//! Settings (environment): `BENCH_SEED` (the generator's seed), `BENCH_CONCURRENCY`
//! (requests in flight while loading, 16), `BENCH_QUERY_RUNS` (timed runs per search, 200),
//! `BENCH_QUERY_WARMUP` (untimed runs before them, 10), `BENCH_QUERY_SECONDS` (a search
//! stops after this long, with at least 5 runs; 30), `BENCH_EXPLAIN_RUNS` (runs of each
//! search in the auto_explain pass, 10), `BENCH_BUNDLE_SIZE` (entries per transaction
//! Bundle, 100), `BENCH_ROUNDS` and `BENCH_WRITE_SECONDS` (write-cost rounds, 12, and seconds
//! per side of a round, 3).

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use search_bench::generate::{DEFAULT_SEED, Generator, ORGANIZATIONS, PRACTITIONERS};
use search_bench::measure::{self, Settings};
use search_bench::queries::{self, Kind};
use search_bench::{explain, ingest, load, report};
use url::Url;

const USAGE: &str = "usage: search-bench generate FROM TO
       search-bench load BASE_URL FROM TO
       search-bench queries
       search-bench measure BASE_URL SCALE
       search-bench explain-pass BASE_URL DB
       search-bench explain-extract LOG DB TXT
       search-bench report RUN_DIR
       search-bench bundles FROM COUNT
       search-bench ingest BASE_URL FROM COUNT CLIENTS
       search-bench write-cost DATABASE_URL PATIENT_JSON";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let generator = Generator::new(setting("BENCH_SEED", DEFAULT_SEED)?);
    match args.as_slice() {
        ["generate", from, to] => generate(&generator, number(from)?, number(to)?),
        ["load", base, from, to] => {
            let report = load::load(
                &client()?,
                &base_url(base)?,
                &generator,
                number(from)?,
                number(to)?,
                setting("BENCH_CONCURRENCY", 16)?,
            )
            .await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        ["queries"] => {
            for query in queries::standard(&generator) {
                println!(
                    "{}\t{}\t{}",
                    query.name,
                    if query.selective { "selective" } else { "-" },
                    query.display()
                );
            }
            Ok(())
        }
        ["measure", base, scale] => {
            let settings = Settings {
                runs: setting("BENCH_QUERY_RUNS", 200)?,
                warmup: setting("BENCH_QUERY_WARMUP", 10)?,
                budget: Duration::from_secs(setting("BENCH_QUERY_SECONDS", 30)?),
            };
            let (client, base, scale) = (client()?, base_url(base)?, number(scale)?);
            for query in queries::standard(&generator) {
                let m = measure::measure(&client, &base, &query, scale, settings).await;
                match (&m.error, m.p50_ms, m.p99_ms) {
                    (Some(error), _, _) => eprintln!("[search-bench] {}: {error}", m.name),
                    (None, Some(p50), Some(p99)) => eprintln!(
                        "[search-bench] {}: {} rows, p50 {p50:.2} ms, p99 {p99:.2} ms ({} runs)",
                        m.name,
                        m.matches.unwrap_or(0) + m.includes.unwrap_or(0),
                        m.runs
                    ),
                    _ => {}
                }
                println!("{}", serde_json::to_string(&m)?);
                std::io::stdout().flush()?;
            }
            Ok(())
        }
        ["explain-pass", base, db] => {
            let queries: Vec<_> = queries::standard(&generator)
                .into_iter()
                .filter(|q| q.selective || matches!(q.kind, Kind::Page(_)) || q.name == "page-1")
                .collect();
            let runs = setting("BENCH_EXPLAIN_RUNS", 10)?;
            let failures = explain::pass(&client()?, &base_url(base)?, &queries, db, runs).await?;
            for (name, error) in failures {
                eprintln!("[search-bench] explain pass: {name}: {error}");
            }
            Ok(())
        }
        ["explain-extract", log, db, txt] => {
            let bytes = std::fs::read(log).with_context(|| log.to_string())?;
            let plans = explain::explain(&String::from_utf8_lossy(&bytes), db);
            std::fs::write(txt, explain::render(&plans, &queries::standard(&generator)))?;
            println!("{}", serde_json::to_string_pretty(&plans)?);
            Ok(())
        }
        ["bundles", from, count] => {
            let size = setting("BENCH_BUNDLE_SIZE", 100)?;
            let (bundles, _) = ingest::bundles(&generator, number(from)?, number(count)?, size);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for bundle in bundles {
                writeln!(out, "{bundle}")?;
            }
            out.flush()?;
            Ok(())
        }
        ["ingest", base, from, count, clients] => {
            let size = setting("BENCH_BUNDLE_SIZE", 100)?;
            let (bundles, next) = ingest::bundles(&generator, number(from)?, number(count)?, size);
            let bodies = ingest::bodies(&bundles)?;
            drop(bundles);
            let report =
                ingest::ingest(&client()?, &base_url(base)?, bodies, number(clients)?).await?;
            let mut line = serde_json::to_value(&report)?;
            line["next_patient"] = next.into();
            println!("{line}");
            Ok(())
        }
        ["write-cost", database_url, patient] => {
            let text = std::fs::read_to_string(patient).with_context(|| patient.to_string())?;
            let document = serde_json::from_str(&text).with_context(|| patient.to_string())?;
            let rounds = setting("BENCH_ROUNDS", 12)?;
            let seconds = setting("BENCH_WRITE_SECONDS", 3)?;
            search_bench::write_cost::run(database_url, &document, rounds, seconds).await
        }
        ["report", dir] => {
            print!("{}", report::report(Path::new(dir))?);
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

fn generate(generator: &Generator, from: u64, to: u64) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if from == 0 {
        for n in 1..=ORGANIZATIONS {
            writeln!(out, "{}", generator.organization(n))?;
        }
        for n in 1..=PRACTITIONERS {
            writeln!(out, "{}", generator.practitioner(n))?;
        }
    }
    for i in from..to {
        let record = generator.record(i);
        writeln!(out, "{}", record.patient)?;
        writeln!(out, "{}", record.account)?;
        for invoice in &record.invoices {
            writeln!(out, "{invoice}")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(64)
        .build()?)
}

fn base_url(text: &str) -> anyhow::Result<Url> {
    Url::parse(text.trim_end_matches('/')).with_context(|| format!("not a URL: {text}"))
}

fn number<T: std::str::FromStr>(text: &str) -> anyhow::Result<T> {
    text.parse()
        .ok()
        .with_context(|| format!("not a number: {text}"))
}

/// A numeric setting from the environment, or its default.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => number(&text).with_context(|| name.to_string()),
        _ => Ok(default),
    }
}
