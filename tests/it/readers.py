"""Independent readers for the conformance suite (tests/it/conformance.rs).

Reads what ctgo-export wrote with tools that share no code with it, and prints one JSON object
on stdout: {DIR: result, ...} for every DIR given.

    readers.py parquet DIR...   pyarrow (every file on its own, then the dataset) and DuckDB
    readers.py csv DIR...       Python's csv module, every visible *.csv file

Timestamps come back as integer milliseconds since the epoch (UTC). Nothing here decides
whether the data is right: the Rust side compares it with the simulator.
"""

import csv
import io
import json
import os
import sys

TABLES = ["leads", "sync_runs", "rejects", "export_jobs"]
BOM = b"\xef\xbb\xbf"


def visible(dirpath, suffix):
    """Names a dataset reader picks up: not hidden (`.`/`_` prefix), with the suffix."""
    try:
        names = sorted(os.listdir(dirpath))
    except FileNotFoundError:
        return []
    return [n for n in names if not n.startswith((".", "_")) and n.endswith(suffix)]


def parquet_table(root, table):
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    dirpath = os.path.join(root, table)
    out = {"files": [], "schema": None, "rows": [], "error": None}
    schemas = set()
    for name in visible(dirpath, ".parquet"):
        entry = {"name": name, "error": None, "rows": None, "schema": None}
        try:
            t = pq.read_table(os.path.join(dirpath, name))
            entry["rows"] = t.num_rows
            entry["schema"] = str(t.schema)
            schemas.add(str(t.schema))
        except Exception as e:  # a half-written file is the finding, not a crash
            entry["error"] = f"{type(e).__name__}: {e}"
        out["files"].append(entry)
    out["distinct_schemas"] = len(schemas)
    if not os.path.isdir(dirpath):
        return out
    try:
        dataset = ds.dataset(dirpath, format="parquet")
        t = dataset.to_table()
        out["schema"] = [[f.name, str(f.type), f.nullable] for f in t.schema]
        cols = {}
        for f in t.schema:
            col = t.column(f.name)
            if pa.types.is_timestamp(f.type):
                col = col.cast(pa.int64())
            cols[f.name] = col.to_pylist()
        names = list(cols)
        out["rows"] = [
            {n: cols[n][i] for n in names} for i in range(t.num_rows)
        ]
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def duckdb_leads(root):
    import duckdb

    dirpath = os.path.join(root, "leads")
    out = {"latest": [], "rows": 0, "dup_versions": 0, "dup_extracted": 0, "columns": [],
           "error": None}
    if not visible(dirpath, ".parquet"):
        return out
    glob = os.path.join(dirpath, "*.parquet")
    try:
        con = duckdb.connect()
        src = f"read_parquet('{glob}')"
        out["columns"] = [[r[0], r[1]] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        out["rows"] = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
        out["latest"] = con.execute(
            f"""SELECT id, epoch_ms(_extracted_at), epoch_ms(_deleted_at), exported_at IS NOT NULL
                FROM {src}
                QUALIFY row_number() OVER (PARTITION BY id ORDER BY _extracted_at DESC) = 1
                ORDER BY id"""
        ).fetchall()
        out["dup_versions"] = con.execute(
            f"""SELECT count(*) FROM (
                  SELECT * EXCLUDE (_extracted_at, _job_id), count(*) AS n FROM {src} GROUP BY ALL
                ) WHERE n > 1"""
        ).fetchone()[0]
        out["dup_extracted"] = con.execute(
            f"""SELECT count(*) FROM (
                  SELECT id, _extracted_at FROM {src} GROUP BY ALL HAVING count(*) > 1
                )"""
        ).fetchone()[0]
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def parquet(root):
    return {
        "tables": {t: parquet_table(root, t) for t in TABLES},
        "duckdb": duckdb_leads(root),
    }


def csv_table(root, table):
    dirpath = os.path.join(root, table)
    files = []
    for name in visible(dirpath, ".csv"):
        entry = {"name": name, "bom": False, "records": [], "ends_crlf": False, "error": None}
        try:
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            entry["bom"] = data.startswith(BOM)
            entry["ends_crlf"] = data.endswith(b"\r\n")
            text = data.decode("utf-8")
            if entry["bom"]:
                text = text[1:]
            reader = csv.reader(io.StringIO(text, newline=""), strict=True)
            entry["records"] = [row for row in reader]
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        files.append(entry)
    return files


def csv_dir(root):
    return {"tables": {t: csv_table(root, t) for t in TABLES}}


def main(argv):
    if len(argv) < 2 or argv[0] not in ("parquet", "csv"):
        print("usage: readers.py parquet|csv DIR...", file=sys.stderr)
        return 2
    read = parquet if argv[0] == "parquet" else csv_dir
    json.dump({d: read(d) for d in argv[1:]}, sys.stdout, ensure_ascii=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
