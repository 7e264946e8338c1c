"""Reads a Quiver lake with DuckDB (hive partitioning) and prints, as JSON, the
row count of every table, the sum of trades.pnl_bps, and market_context counts per
(symbol, date). Used by tests/it/cross_engine.rs."""

import json
import sys

import duckdb

TABLES = [
    "signals", "gate_decisions", "trades", "shadow_trades",
    "trace_steps", "model_events", "market_context", "predictions",
]


def main(lake: str) -> None:
    con = duckdb.connect()

    def scan(table: str) -> str:
        glob = f"{lake}/{table}/*/*/*.parquet".replace("'", "''")
        return f"read_parquet('{glob}', hive_partitioning = true)"

    out = {"counts": {}, "pnl_sum": None, "market_by_partition": []}
    for table in TABLES:
        out["counts"][table] = con.execute(f"SELECT count(*) FROM {scan(table)}").fetchone()[0]
    out["pnl_sum"] = con.execute(f"SELECT sum(pnl_bps) FROM {scan('trades')}").fetchone()[0]
    rows = con.execute(
        f"SELECT symbol, CAST(date AS VARCHAR), count(*) FROM {scan('market_context')} "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    out["market_by_partition"] = [list(r) for r in rows]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
