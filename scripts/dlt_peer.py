#!/usr/bin/env python3
"""The dlt peer of the benchmark: the same export as `ctgo-export sync --dest parquet:DIR`, written
the way a dlt user would write it.

A `dlt.sources.rest_api` source over `GET /leads` (bearer key, offset pagination with
`limit`/`offset` and `total`, `data_selector` `leads`), incremental on `discoveredAt` passed as
`since`, primary key `id`, into dlt's filesystem destination as Parquet. Run by `scripts/bench`
inside its own virtualenv (`target/bench-venv`, `pip install "dlt[parquet]"`).

Prints one JSON object on stdout: rows loaded, the time `pipeline.run` took, and the dlt version.
The key comes from `CTGO_API_KEY` (never a flag, never printed).
"""

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:18787/api/v2")
    ap.add_argument("--out", required=True, help="directory of the filesystem destination")
    ap.add_argument("--pipelines-dir", required=True, help="dlt's working/state directory")
    ap.add_argument("--limit", type=int, default=500, help="page size (the API's max is 500)")
    ap.add_argument("--name", default="ctgo_bench", help="pipeline name")
    args = ap.parse_args()

    key = os.environ.get("CTGO_API_KEY")
    if not key:
        print("dlt_peer: set CTGO_API_KEY", file=sys.stderr)
        return 2

    # Keep dlt's own telemetry and config lookups out of the figures.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": args.base_url.rstrip("/") + "/",
                "auth": {"type": "bearer", "token": key},
                "paginator": {
                    "type": "offset",
                    "limit": args.limit,
                    "offset_param": "offset",
                    "limit_param": "limit",
                    "total_path": "total",
                },
            },
            "resources": [
                {
                    "name": "leads",
                    "primary_key": "id",
                    "write_disposition": "append",
                    "endpoint": {
                        "path": "leads",
                        "data_selector": "leads",
                        "params": {
                            "since": {
                                "type": "incremental",
                                "cursor_path": "discoveredAt",
                                "initial_value": "2000-01-01T00:00:00Z",
                            },
                        },
                    },
                }
            ],
        }
    )

    pipeline = dlt.pipeline(
        pipeline_name=args.name,
        pipelines_dir=args.pipelines_dir,
        destination=dlt.destinations.filesystem(bucket_url=os.path.abspath(args.out)),
        dataset_name="ctgo",
        progress="log" if os.environ.get("DLT_PEER_PROGRESS") else None,
    )
    started = time.perf_counter()
    pipeline.run(source, loader_file_format="parquet")
    elapsed = time.perf_counter() - started

    rows = 0
    trace = pipeline.last_trace
    if trace is not None and trace.last_normalize_info is not None:
        rows = int(trace.last_normalize_info.row_counts.get("leads", 0))
    print(
        json.dumps(
            {
                "rows": rows,
                "run_seconds": round(elapsed, 3),
                "dlt_version": dlt.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
