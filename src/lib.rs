//! ctgo-export: exactly-once incremental export of Catch The Good Ones leads and sync runs
//! into SQLite, Parquet and CSV.
//!
//! The pipeline reads like its data flows: **source → cursor → mapping → destination → job
//! ledger**. Each stage lives in one place:
//!
//! # Layout
//!
//! - [`api`]: the HTTP client (key handling, rate limit, retries, error classification) and
//!   the response envelopes.
//! - [`simulator`]: a deterministic in-process stand-in for the API that can play every open
//!   point of the API contract and inject faults; used by `simulate`, `demo`, tests, benches.
//! - [`extract`]: pagination, the persisted cursor with its lookback, dedup by id + content
//!   hash, and the job loop that ties the stages together.
//! - [`schema`]: the Arrow schemas, loaded from the files in `schemas/` at build time.
//! - [`mapping`]: API records → Arrow `RecordBatch`es, with rejects for records that do not fit.
//! - [`dest`]: the destinations (SQLite, Parquet, CSV) behind one begin / write / commit trait,
//!   and the state store that keeps cursor and dedup state beside the data.
//! - [`job`]: the export-job status machine, counts and the job record.
//! - [`cli`] and [`config`]: clap flags, then one function that turns flags + environment +
//!   TOML file into a validated [`config::JobConfig`].
//! - [`fault`]: the test-only crash hook used to prove exactly-once at named commit steps.
//! - [`term`]: lines for stdout and stderr that a closed pipe cannot turn into a panic.

pub mod api;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dest;
pub mod extract;
pub mod fault;
pub mod job;
pub mod mapping;
pub mod schema;
pub mod simulator;
pub mod term;
