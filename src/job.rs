//! The export-job status machine, its counts, and the job record.
//!
//! Every `sync` is one job, recorded in the destination's `export_jobs` table in the layout of a
//! sync-job history. The status moves only along
//! `PENDING → RUNNING → COMPLETED | FAILED | CANCELLING → CANCELLED`; a job that a crash left
//! `PENDING`, `RUNNING` or `CANCELLING` is marked `FAILED` ("interrupted") by the next job on the
//! same destination. The record printed by `sync --json` and listed by `jobs --json` is
//! [`JobRecord`], serialized field for field as `product.md` shows it.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Running => "RUNNING",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        [
            JobStatus::Pending,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelling,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// No further transition: the job is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The transitions the status machine allows.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Pending, Failed)
                | (Pending, Cancelling)
                | (Running, Completed)
                | (Running, Failed)
                | (Running, Cancelling)
                | (Cancelling, Cancelled)
                | (Cancelling, Failed)
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one job did to one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub failed: u64,
}

impl TableCounts {
    pub fn add(&mut self, other: &TableCounts) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.failed += other.failed;
    }
}

/// One export job, as recorded in `export_jobs` and printed by `sync --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub source_connection_id: String,
    pub status: JobStatus,
    #[serde(with = "ts")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "ts_opt")]
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub entities_inserted: u64,
    pub entities_updated: u64,
    pub entities_deleted: u64,
    pub entities_failed: u64,
    pub error: Option<String>,
    pub error_details: Option<serde_json::Value>,
    pub tables: BTreeMap<String, TableCounts>,
}

/// A status change the machine does not allow (a bug, never user input).
#[derive(Debug, thiserror::Error)]
#[error("export job {id}: cannot go from {from} to {to}")]
pub struct BadTransition {
    pub id: String,
    pub from: JobStatus,
    pub to: JobStatus,
}

impl JobRecord {
    /// A new job, `PENDING`, with a UUID v7 id (time-ordered, so ids sort by start).
    pub fn new(source_connection_id: Uuid, now: DateTime<Utc>) -> JobRecord {
        // Times are kept to the millisecond, as they are printed and stored, so that
        // `duration_seconds` is exactly `completed_at − started_at`.
        let now = now.trunc_subsecs(3);
        JobRecord {
            id: Uuid::now_v7().to_string(),
            source_connection_id: source_connection_id.to_string(),
            status: JobStatus::Pending,
            started_at: now,
            completed_at: None,
            duration_seconds: None,
            entities_inserted: 0,
            entities_updated: 0,
            entities_deleted: 0,
            entities_failed: 0,
            error: None,
            error_details: None,
            tables: BTreeMap::new(),
        }
    }

    /// Move to `next`, stamping `completed_at` and `duration_seconds` on a final status.
    pub fn transition(&mut self, next: JobStatus, now: DateTime<Utc>) -> Result<(), BadTransition> {
        if !self.status.can_become(next) {
            return Err(BadTransition {
                id: self.id.clone(),
                from: self.status,
                to: next,
            });
        }
        self.status = next;
        if next.is_final() {
            let now = now.trunc_subsecs(3);
            self.completed_at = Some(now);
            let ms = (now - self.started_at).num_milliseconds().max(0);
            self.duration_seconds = Some(ms as f64 / 1000.0);
        }
        Ok(())
    }

    /// Fail with a message and optional structured details.
    pub fn fail(
        &mut self,
        error: String,
        details: Option<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), BadTransition> {
        self.transition(JobStatus::Failed, now)?;
        self.error = Some(error);
        self.error_details = details;
        Ok(())
    }

    /// Add counts for one table and refresh the totals.
    pub fn add_counts(&mut self, table: &str, counts: &TableCounts) {
        self.tables
            .entry(table.to_string())
            .or_default()
            .add(counts);
        self.recount();
    }

    /// Make sure a table appears in `tables` even when nothing happened to it.
    pub fn touch_table(&mut self, table: &str) {
        self.tables.entry(table.to_string()).or_default();
    }

    fn recount(&mut self) {
        let mut total = TableCounts::default();
        for c in self.tables.values() {
            total.add(c);
        }
        self.entities_inserted = total.inserted;
        self.entities_updated = total.updated;
        self.entities_deleted = total.deleted;
        self.entities_failed = total.failed;
    }

    /// The one-line JSON of `sync --json` and `jobs --json`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a job record always serializes")
    }
}

/// Timestamps as `2026-11-23T10:00:00.000Z`: ISO 8601, UTC, milliseconds, `Z`.
pub fn format_ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parse what [`format_ts`] wrote (any RFC 3339 accepted).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

mod ts {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ts(t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        parse_ts(&s).ok_or_else(|| serde::de::Error::custom(format!("bad timestamp {s:?}")))
    }
}

mod ts_opt {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_ts(t)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => parse_ts(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("bad timestamp {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_ts(s).unwrap()
    }

    #[test]
    fn the_duration_is_exactly_the_difference_of_the_printed_times() {
        let start = t("2026-11-23T10:00:00.000Z") + chrono::Duration::microseconds(999);
        let mut job = JobRecord::new(Uuid::nil(), start);
        job.transition(JobStatus::Running, start).unwrap();
        let end = t("2026-11-23T10:00:04.210Z") + chrono::Duration::microseconds(1);
        job.transition(JobStatus::Completed, end).unwrap();
        let v: serde_json::Value = serde_json::from_str(&job.to_json_line()).unwrap();
        assert_eq!(v["started_at"], "2026-11-23T10:00:00.000Z");
        assert_eq!(v["completed_at"], "2026-11-23T10:00:04.210Z");
        assert_eq!(v["duration_seconds"], 4.21);
    }

    #[test]
    fn status_machine_allows_only_documented_paths() {
        let mut job = JobRecord::new(Uuid::nil(), t("2026-11-23T10:00:00Z"));
        assert!(job.transition(JobStatus::Completed, Utc::now()).is_err());
        job.transition(JobStatus::Running, t("2026-11-23T10:00:00Z"))
            .unwrap();
        job.transition(JobStatus::Cancelling, t("2026-11-23T10:00:01Z"))
            .unwrap();
        assert!(job.transition(JobStatus::Completed, Utc::now()).is_err());
        job.transition(JobStatus::Cancelled, t("2026-11-23T10:00:04.210Z"))
            .unwrap();
        assert_eq!(job.duration_seconds, Some(4.21));
        assert!(job.transition(JobStatus::Running, Utc::now()).is_err());
    }

    #[test]
    fn record_serializes_in_product_layout() {
        let mut job = JobRecord::new(Uuid::nil(), t("2026-11-23T10:00:00Z"));
        job.transition(JobStatus::Running, t("2026-11-23T10:00:00Z"))
            .unwrap();
        job.add_counts(
            "leads",
            &TableCounts {
                inserted: 1245,
                updated: 3,
                deleted: 0,
                failed: 2,
            },
        );
        job.add_counts(
            "sync_runs",
            &TableCounts {
                inserted: 45,
                ..Default::default()
            },
        );
        job.transition(JobStatus::Completed, t("2026-11-23T10:00:04.210Z"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&job.to_json_line()).unwrap();
        assert_eq!(v["status"], "COMPLETED");
        assert_eq!(v["started_at"], "2026-11-23T10:00:00.000Z");
        assert_eq!(v["completed_at"], "2026-11-23T10:00:04.210Z");
        assert_eq!(v["entities_inserted"], 1290);
        assert_eq!(v["entities_failed"], 2);
        assert_eq!(v["tables"]["leads"]["updated"], 3);
        assert!(v["error"].is_null());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys.len(), 13);
        let back: JobRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, job);
    }
}
