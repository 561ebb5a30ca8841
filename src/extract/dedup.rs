//! One page of records through mapping, dedup and staging.
//!
//! Each record is mapped; its id and content hash are compared with the destination's state:
//! an id never written before is an insert, a known id with another hash (or one marked
//! deleted) is an update, the same content is neither and writes nothing. Only inserts and
//! updates reach the destination, and their dedup state is staged in the same transaction as
//! the rows, so a crash keeps both or neither. Rejects are counted once per distinct record.

use std::collections::HashMap;

use arrow_array::BooleanArray;
use xxhash_rust::xxh3::xxh3_128;

use crate::dest::{Change, DestError, Destination, Seen};
use crate::job::TableCounts;
use crate::mapping::{self, MapContext, Mapped, RowKey};
use crate::schema::Table;

/// What one page did.
#[derive(Debug, Default)]
pub struct PageOutcome {
    pub counts: TableCounts,
    /// Newest cursor value (`discoveredAt` / `triggeredAt`) among the mapped rows.
    pub max_cursor_ms: Option<i64>,
    /// Ids of every mapped row, in page order.
    pub ids: Vec<i64>,
    /// Cursor values in page order (None where missing).
    pub cursors: Vec<Option<i64>>,
    /// Mapped rows that were neither new nor changed.
    pub unchanged: usize,
}

impl PageOutcome {
    pub fn changed(&self) -> u64 {
        self.counts.inserted + self.counts.updated
    }

    /// True when the page's cursor values never increase (the API lists newest first).
    pub fn newest_first(&self) -> bool {
        let c: Vec<i64> = self.cursors.iter().flatten().copied().collect();
        c.windows(2).all(|w| w[0] >= w[1])
    }
}

/// Map one page of `table` (no destination needed: this runs beside the writer).
pub fn map_page(table: Table, records: &[&str], ctx: &MapContext) -> Mapped {
    match table {
        Table::Leads => mapping::map_leads(records, ctx),
        Table::SyncRuns => mapping::map_runs(records, ctx),
        _ => unreachable!("only leads and sync_runs are extracted"),
    }
}

/// Map, dedup and stage one page. Does not commit.
pub fn stage_page(
    dest: &mut dyn Destination,
    table: Table,
    records: &[&str],
    ctx: &MapContext,
    touch_unchanged: bool,
) -> Result<PageOutcome, DestError> {
    stage_mapped(
        dest,
        table,
        map_page(table, records, ctx),
        ctx,
        touch_unchanged,
    )
}

/// Dedup and stage one mapped page. Does not commit.
pub fn stage_mapped(
    dest: &mut dyn Destination,
    table: Table,
    mapped: Mapped,
    ctx: &MapContext,
    touch_unchanged: bool,
) -> Result<PageOutcome, DestError> {
    let ids: Vec<i64> = mapped.keys.iter().map(|k| k.id).collect();
    let seen = dest
        .state()
        .lookup(table, &ids)
        .map_err(DestError::sql("reading dedup state"))?;

    let mut out = PageOutcome {
        ids,
        cursors: mapped.keys.iter().map(|k| k.cursor_ms).collect(),
        ..PageOutcome::default()
    };
    // A page may hold the same id twice (an API that repeats a record within one response).
    // Both versions would get the page's one `_extracted_at`, so a files reader could not tell
    // which is the latest: only the last one in the page counts, as it is the one that SQLite's
    // upsert would keep. Pages rarely repeat an id, so the positions are only computed when one
    // does.
    let superseded: Vec<bool> = {
        let mut sorted = out.ids.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            let last: HashMap<i64, usize> =
                out.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            out.ids
                .iter()
                .enumerate()
                .map(|(i, id)| last[id] != i)
                .collect()
        } else {
            Vec::new()
        }
    };
    let mut keep = Vec::with_capacity(mapped.keys.len());
    let mut kept: Vec<RowKey> = Vec::new();
    let mut unchanged_ids = Vec::new();
    for (i, key) in mapped.keys.iter().enumerate() {
        if ctx
            .floor_ms
            .is_some_and(|f| key.cursor_ms.is_some_and(|c| c < f))
        {
            // Before the `--since` floor: served (the floor is asked a second early, for an
            // API whose `since` is exclusive), but not exported.
            keep.push(false);
            continue;
        }
        out.max_cursor_ms = out.max_cursor_ms.max(key.cursor_ms);
        if superseded.get(i) == Some(&true) {
            keep.push(false);
            continue;
        }
        let change = Seen::change_for(seen.get(&key.id), key.hash);
        match change {
            Change::Insert => out.counts.inserted += 1,
            Change::Update => out.counts.updated += 1,
            Change::Unchanged => {
                out.unchanged += 1;
                unchanged_ids.push(key.id);
            }
        }
        let write = change != Change::Unchanged;
        keep.push(write);
        if write {
            kept.push(*key);
        }
    }

    if !kept.is_empty() {
        // Rows kept in one run (all of them, or all but the page's first: the record the
        // overlapping pages share) are a slice, without a copy.
        let first = keep.iter().position(|k| *k).unwrap_or(0);
        let rows = if kept.len() == mapped.keys.len() {
            mapped.batch
        } else if keep[first..first + kept.len()].iter().all(|k| *k) {
            mapped.batch.slice(first, kept.len())
        } else {
            arrow_select::filter::filter_record_batch(&mapped.batch, &BooleanArray::from(keep))
                .map_err(|e| DestError::Format {
                    what: table.name().into(),
                    message: e.to_string(),
                })?
        };
        dest.write(table, &rows)?;
        dest.state()
            .upsert_seen(table, &kept, &ctx.job_id)
            .map_err(DestError::sql("staging dedup state"))?;
    }
    if touch_unchanged && !unchanged_ids.is_empty() {
        dest.state()
            .touch_seen(table, &unchanged_ids, &ctx.job_id)
            .map_err(DestError::sql("staging dedup state"))?;
    }

    if !mapped.rejects.is_empty() {
        if touch_unchanged {
            // Served, if malformed: not an id the API no longer returns.
            let ids: Vec<i64> = mapped.rejects.iter().filter_map(|r| r.id).collect();
            dest.state()
                .touch_seen(table, &ids, &ctx.job_id)
                .map_err(DestError::sql("staging dedup state"))?;
        }
        let mut fresh = Vec::new();
        for r in mapped.rejects {
            let mut h = Vec::with_capacity(r.raw.len() + 16);
            h.extend_from_slice(table.name().as_bytes());
            h.push(0);
            h.extend_from_slice(r.raw.as_bytes());
            if dest
                .state()
                .first_reject(xxh3_128(&h))
                .map_err(DestError::sql("staging rejects"))?
            {
                tracing::debug!(table = table.name(), reason = %r.reason, "Record rejected.");
                fresh.push(r);
            }
        }
        out.counts.failed = fresh.len() as u64;
        if let Some(first) = fresh.first() {
            tracing::info!(
                table = table.name(),
                rejected = fresh.len(),
                first_reason = %first.reason,
                "Records that do not fit the schema were quarantined in `rejects`."
            );
        }
        if !fresh.is_empty() {
            let batch = mapping::rejects_batch(&fresh, &ctx.job_id, ctx.extracted_at_ms);
            dest.write_rejects(&batch)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::sqlite::SqliteDest;

    fn lead(id: i64, bio: &str) -> String {
        format!(
            r#"{{"id": {id}, "streamId": 42, "trackedXAccountId": 7, "segmentId": 12, "matchConfidence": "high", "sourceType": "new_follower", "discoveredAt": "2026-06-02T09:01:00Z", "exportedAt": null, "profile": {{"xUserId": "1{id}", "handle": "h{id}", "displayName": "H", "profileImageUrl": null, "followerCount": 8200, "bio": "{bio}"}}}}"#
        )
    }

    fn ctx() -> MapContext {
        MapContext {
            extracted_at_ms: 1_780_000_000_000,
            job_id: "job-1".into(),
            floor_ms: None,
        }
    }

    fn stage(dest: &mut SqliteDest, records: &[String]) -> PageOutcome {
        let texts: Vec<&str> = records.iter().map(String::as_str).collect();
        stage_page(dest, Table::Leads, &texts, &ctx(), false).expect("staged")
    }

    #[test]
    fn an_id_twice_in_a_page_counts_and_writes_its_last_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut dest = SqliteDest::open(&dir.path().join("leads.db")).unwrap();
        // Changed within the page: one insert, of the later version; the earlier one would
        // tie with it on `_extracted_at` in a files destination.
        let out = stage(&mut dest, &[lead(1, "a"), lead(2, "b"), lead(1, "c")]);
        assert_eq!(
            (out.counts.inserted, out.counts.updated, out.unchanged),
            (2, 0, 0)
        );
        let later = map_page(Table::Leads, &[lead(1, "c").as_str()], &ctx()).keys[0].hash;
        let seen = dest.state().lookup(Table::Leads, &[1]).unwrap();
        assert_eq!(seen[&1].hash, later);
        // The same version twice: one unchanged row; a repeat whose last version is the
        // committed one is unchanged, whatever came before it in the page.
        let out = stage(
            &mut dest,
            &[lead(3, "d"), lead(3, "d"), lead(1, "x"), lead(1, "c")],
        );
        assert_eq!(
            (out.counts.inserted, out.counts.updated, out.unchanged),
            (1, 0, 1)
        );
        // A page without repeats compares with the state alone.
        let out = stage(&mut dest, &[lead(4, "e"), lead(3, "x"), lead(2, "b")]);
        assert_eq!(
            (out.counts.inserted, out.counts.updated, out.unchanged),
            (1, 1, 1)
        );
        // Every id of the page is still reported, for the pagination checks.
        let out = stage(&mut dest, &[lead(5, "f"), lead(5, "g")]);
        assert_eq!(out.ids, [5, 5]);
    }
}
