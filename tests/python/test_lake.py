"""The lake as other engines read it: hive partitions that survive a
case-insensitive file system and still name the symbol as logged."""

import datetime as dt
import os
import tempfile

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import pyarrow as pa

from conftest import start_server, stop_server


def market_rows(symbol, n):
    now = dt.datetime.now(dt.timezone.utc)
    return pa.table(
        {
            "ts": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "symbol": [symbol] * n,
            "price": [100.0] * n,
            "spread_bps": [1.5] * n,
            "volume": [2.0] * n,
            "volatility": [0.3] * n,
            "regime": ["RANGE"] * n,
        }
    )


def test_symbols_differing_only_by_case_are_separate_partitions_duckdb_reads_back():
    work = tempfile.mkdtemp(prefix="quiver-pytest-lake-")
    data = os.path.join(work, "data")
    proc, url, log = start_server(os.environ["TEST_QUIVER_BIN"], None, data, work, name="lake")
    try:
        with flight_sql.connect(url) as conn:
            with conn.cursor() as cur:
                for symbol, n in [("BTC", 30), ("btc", 20), ("Btc", 10)]:
                    cur.adbc_ingest("market_context", market_rows(symbol, n), mode="append")
            conn.commit()
    finally:
        stop_server(proc, log)  # a clean stop rolls everything into the lake
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    partitions = os.listdir(os.path.join(data, "lake", "market_context", f"date={day}"))
    folded = {p.lower() for p in partitions}
    assert len(folded) == 3, partitions
    glob = os.path.join(data, "lake", "market_context", "*", "*", "*.parquet")
    rows = duckdb.sql(
        f"SELECT symbol, count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("BTC", 30), ("Btc", 10), ("btc", 20)]
