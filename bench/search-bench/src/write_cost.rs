//! What indexing costs a create, in process (no HTTP, no JSON parsing): a Patient created
//! through the store by [`CLIENTS`] concurrent loops, with the built-in search parameters and
//! with none, in alternating rounds on one database. The extraction of the index values is
//! timed apart.

use std::time::{Duration, Instant};

use anyhow::Context;
use fhir_core::ResourceType;
use fhir_core::search::Registry;
use serde_json::{Value, json};
use store::{MIGRATOR, ReferentialIntegrity, Store};

/// Concurrent create loops.
const CLIENTS: usize = 8;
/// Untimed creates on each side before the rounds.
const WARMUP: Duration = Duration::from_secs(2);
/// Extractions timed on their own.
const EXTRACTIONS: u32 = 2_000;

/// Measures on the (empty, throwaway) database at `database_url`; prints one JSON line per
/// round and a last one with the extraction time and the median ratio.
pub async fn run(
    database_url: &str,
    document: &Value,
    rounds: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let indexed = Store::connect(database_url, CLIENTS as u32)
        .await?
        .with_referential_integrity(ReferentialIntegrity {
            writes: false,
            deletes: false,
        });
    MIGRATOR.run(indexed.pool()).await?;
    let builtin = indexed.registry()?;
    // Untimed first: the first extraction loads the element definitions.
    for _ in 0..EXTRACTIONS / 10 {
        builtin.index(document, Default::default());
    }
    let started = Instant::now();
    let mut values = 0;
    for _ in 0..EXTRACTIONS {
        values = builtin.index(document, Default::default()).entries.len();
    }
    let extraction_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(EXTRACTIONS);

    let none: &'static Registry = Box::leak(Box::new(Registry::from_definitions(&[])?));
    let bare = indexed.clone().with_registry(none);
    creates(&indexed, document, WARMUP).await?;
    creates(&bare, document, WARMUP).await?;
    let duration = Duration::from_secs(seconds);
    let mut ratios = Vec::with_capacity(rounds);
    let mut checkpoints = true;
    for round in 1..=rounds {
        checkpoints &= checkpoint(&indexed).await;
        let with = creates(&indexed, document, duration).await? as f64 / duration.as_secs_f64();
        checkpoints &= checkpoint(&indexed).await;
        let without = creates(&bare, document, duration).await? as f64 / duration.as_secs_f64();
        println!(
            "{}",
            json!({"round": round, "with_per_s": with, "without_per_s": without,
                   "ratio": with / without})
        );
        ratios.push(with / without);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"values": values, "extraction_us": extraction_us, "clients": CLIENTS,
               "seconds": seconds, "checkpoints": checkpoints,
               "median_ratio": ratios.get(ratios.len() / 2)})
    );
    Ok(())
}

/// Creates `document` from [`CLIENTS`] loops for `duration`; returns how many.
async fn creates(store: &Store, document: &Value, duration: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + duration;
    let loops = (0..CLIENTS).map(|_| async move {
        let mut n = 0;
        while Instant::now() < deadline {
            store
                .create(ResourceType::Patient, document.clone(), &[], None)
                .await
                .context("a create failed")?;
            n += 1;
        }
        anyhow::Ok(n)
    });
    futures::future::try_join_all(loops)
        .await
        .map(|counts| counts.into_iter().sum())
}

/// A checkpoint, so that neither side pays for the other's dirty pages; `false` when the
/// role may not run one (PostgreSQL 15: a superuser or a member of `pg_checkpoint`), which
/// the summary reports.
async fn checkpoint(store: &Store) -> bool {
    sqlx::query("checkpoint")
        .execute(store.pool())
        .await
        .is_ok()
}
