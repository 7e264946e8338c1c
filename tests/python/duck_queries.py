"""Runs queries with DuckDB over a Quiver lake and prints their rows as JSON.

Reads {"lake": DIR, "queries": {NAME: SQL}} on stdin; each event table is a
view over its hive-partitioned Parquet files. Prints {NAME: [[key, value]]}.
Used by tests/it/metrics.rs (hand-written DuckDB against Quiver's metrics) and
tests/it/metrics.rs's compute test (reading metric_values back).
"""

import json
import sys

import duckdb

TABLES = [
    "signals", "gate_decisions", "trades", "shadow_trades",
    "trace_steps", "model_events", "market_context", "predictions",
    "metric_values", "alerts",
]


def main() -> None:
    request = json.load(sys.stdin)
    lake = request["lake"]
    con = duckdb.connect()
    for table in TABLES:
        depth = "*/*" if table in ("metric_values", "alerts") else "*/*/*"
        glob = f"{lake}/{table}/{depth}.parquet".replace("'", "''")
        try:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)"
            )
        except duckdb.IOException:
            pass  # no files for this table
    out = {}
    for name, sql in request["queries"].items():
        out[name] = [list(row) for row in con.execute(sql).fetchall()]
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
