//! The command line, as clap parses it. Nothing here has side effects or checks meaning:
//! [`crate::config`] turns these flags, the environment and the TOML file into a validated
//! [`crate::config::JobConfig`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::simulator::SimulateArgs;

/// The exit statuses of `sync`, for its `--help`.
const EXIT_STATUSES: &str = "Exit status: 0 completed (also with quarantined records), 1 failed (or the destination is busy),\n2 usage or configuration error, 3 refused by the API (401, 403, 410), 130 cancelled (SIGINT, SIGTERM or SIGHUP).";

#[derive(Debug, Parser)]
#[command(
    name = "ctgo-export",
    version,
    about = "Export Catch The Good Ones leads and sync runs into SQLite, Parquet or CSV, incrementally and exactly once.",
    after_help = "The API key comes from CTGO_API_KEY or --api-key-file, never from a flag.\nRUST_LOG=ctgo_export=debug shows what the exporter does (the key never appears).\n\nExit status: 0 completed (also with quarantined records), 1 failed (or the destination is busy),\n2 usage or configuration error, 3 refused by the API (401, 403, 410), 130 cancelled (SIGINT, SIGTERM\nor SIGHUP)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export new and changed leads and sync runs into a destination.
    #[command(after_help = EXIT_STATUSES)]
    Sync(SyncArgs),
    /// List the export-job history of a destination, newest first.
    Jobs(JobsArgs),
    /// Verify the API key with GET /me.
    Check(CheckArgs),
    /// Print the Arrow schemas of the tables.
    Schema(SchemaArgs),
    /// Run the built-in API simulator.
    Simulate(SimulateArgs),
    /// Simulator + export into ./ctgo-demo, no key needed.
    Demo(DemoArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct SyncArgs {
    /// Destination: sqlite:PATH, parquet:DIR or csv:DIR.
    #[arg(long, env = "CTGO_DEST", value_name = "URI")]
    pub dest: Option<String>,
    /// API base URL (https; plain http only for loopback)
    /// [default: https://www.catchthegoodones.com/api/v2].
    #[arg(long, env = "CTGO_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Export only these streams (repeatable, or comma-separated), through the per-stream
    /// endpoint.
    #[arg(long = "stream", value_name = "ID", value_delimiter = ',')]
    pub streams: Vec<i64>,
    /// Tables to export, comma-separated: leads, sync_runs [default: leads,sync_runs].
    #[arg(long, env = "CTGO_TABLES", value_name = "LIST")]
    pub tables: Option<String>,
    /// How far before the cursor each run reads again (late arrivals), e.g. 15m, 1h
    /// [default: 15m].
    #[arg(long, env = "CTGO_LOOKBACK", value_name = "DURATION")]
    pub lookback: Option<String>,
    /// Export no lead discovered before this: an ISO 8601 time with its zone
    /// (2026-06-01T00:00:00Z) or a date (midnight UTC). The first run starts there; later runs,
    /// full refreshes too, follow the cursor but never export a lead before it [default: the
    /// whole history].
    #[arg(long, env = "CTGO_SINCE", value_name = "ISO8601")]
    pub since: Option<String>,
    /// Re-read everything (from --since, if given) and mark ids the API no longer returns as
    /// deleted.
    #[arg(long, overrides_with = "no_full_refresh")]
    pub full_refresh: bool,
    /// An incremental run, even if the config file sets full_refresh = true.
    #[arg(long, overrides_with = "full_refresh")]
    pub no_full_refresh: bool,
    /// Print the job record as one JSON object on stdout.
    #[arg(long, overrides_with = "no_json")]
    pub json: bool,
    /// No JSON on stdout, even if the config file sets json = true.
    #[arg(long, overrides_with = "json")]
    pub no_json: bool,
    /// Read the API key from this file (instead of CTGO_API_KEY).
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// TOML file with sync settings (flags and environment override it).
    #[arg(long, env = "CTGO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Request budget per minute, 1 to 60 (the API's limit); 0 (no limit) or more only for a
    /// simulator on loopback
    /// [default: 60].
    #[arg(long, env = "CTGO_REQUESTS_PER_MINUTE", value_name = "N")]
    pub requests_per_minute: Option<String>,
    /// Retries of a transient API fault (5xx, timeout, dropped connection) before the job fails
    /// [default: 8].
    #[arg(long, env = "CTGO_MAX_RETRIES", value_name = "N")]
    pub max_retries: Option<String>,
    /// How long one API request may take before it counts as a transient fault (and is
    /// retried), e.g. 60s, 2m, 500ms [default: 60s].
    #[arg(long, env = "CTGO_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Write a UTF-8 byte order mark at the start of CSV files (for Excel).
    #[arg(long, overrides_with = "no_csv_bom")]
    pub csv_bom: bool,
    /// No byte order mark, even if the config file sets csv_bom = true.
    #[arg(long, overrides_with = "csv_bom")]
    pub no_csv_bom: bool,
    /// Leads per request (1..=500, the API's maximum) [default: 500]. Fewer means more
    /// requests against the rate limit; for an API that serves fewer than asked, nothing to
    /// set: pages of any size are read to the end.
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    /// Do not show a progress bar even on a terminal.
    #[arg(long, overrides_with = "progress")]
    pub no_progress: bool,
    /// Show the progress bar on a terminal, even if the config file sets no_progress = true.
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
}

#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    /// Destination: sqlite:PATH, parquet:DIR or csv:DIR (or dest in the config file).
    #[arg(long, env = "CTGO_DEST", value_name = "URI")]
    pub dest: Option<String>,
    /// The sync config file; its dest is used when --dest is not given.
    #[arg(long, env = "CTGO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// How many jobs to list (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = crate::config::DEFAULT_JOBS_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// One JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// API base URL (https; plain http only for loopback) [default:
    /// https://www.catchthegoodones.com/api/v2].
    #[arg(long, env = "CTGO_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Read the API key from this file (instead of CTGO_API_KEY).
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// The sync config file; its base_url, api_key_file and timeout are used unless given here.
    #[arg(long, env = "CTGO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print /me as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// How long one API request may take before it counts as a transient fault, e.g. 60s, 2m,
    /// 500ms [default: 60s]. A transient fault is retried 3 times (a check is quick to run
    /// again: sync's --max-retries does not apply).
    #[arg(long, env = "CTGO_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// leads, sync_runs, export_jobs or rejects; all when omitted.
    pub table: Option<String>,
    /// Print the schema file as shipped (JSON) instead of a table; for all tables, one JSON
    /// object of them by table name.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Where to write the demo outputs.
    #[arg(long, default_value = "ctgo-demo", value_name = "DIR")]
    pub out: PathBuf,
    /// How many leads the simulator serves.
    #[arg(long, default_value_t = crate::demo::DEFAULT_DEMO_LEADS)]
    pub leads: usize,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;
    use crate::{api, config};

    /// The defaults that `--help` names are the ones the code uses.
    #[test]
    fn help_names_the_defaults_in_force() {
        let mut cli = Cli::command();
        let sync = cli.find_subcommand_mut("sync").unwrap().render_long_help();
        let help = sync
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for want in [
            format!("[default: {}]", api::DEFAULT_BASE_URL),
            format!("[default: {}m]", config::DEFAULT_LOOKBACK.as_secs() / 60),
            format!("[default: {}s]", api::DEFAULT_TIMEOUT.as_secs()),
            format!("[default: {}]", api::DEFAULT_MAX_RETRIES),
            format!("[default: {}]", api::DEFAULT_REQUESTS_PER_MINUTE),
        ] {
            assert!(help.contains(&want), "sync --help lacks {want}: {help}");
        }
    }
}
