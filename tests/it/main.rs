//! The one integration-test binary (one link step): the real `ctgo-export` binary against the
//! in-process simulator on 127.0.0.1, with real SQLite, Parquet and CSV files.

mod api_answers;
mod cli;
mod common;
mod conformance;
mod crash;
mod readme;
mod sync;
