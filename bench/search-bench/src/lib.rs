//! The search benchmark (`bench/search`, see `bench/README.md`, "Search"): a seeded
//! generator of realistic data ([`generate`]), the searches timed ([`queries`]), the load of
//! the data into a server ([`load`]), the timing ([`measure`]), the plans PostgreSQL chose
//! ([`explain`]) and the report ([`report`]); transaction Bundles of the same data and their
//! ingest ([`ingest`], for `bench/transaction`).
pub mod explain;
pub mod generate;
pub mod ingest;
pub mod load;
pub mod measure;
pub mod queries;
pub mod report;
pub mod write_cost;
