"""Quiver's Flight SQL server through the clients users run: ADBC (with pandas
and polars) and pyarrow.flight."""

import datetime as dt

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import connect, scalar


# -- metadata ---------------------------------------------------------------


def test_get_info_names_the_server(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Quiver"
    assert info["vendor_version"]


def test_get_objects_lists_catalog_schemas_tables_and_columns(conn):
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "quiver" in catalogs
    schemas = {s["db_schema_name"]: s for s in catalogs["quiver"]["catalog_db_schemas"]}
    assert {"events", "hot", "system"} <= set(schemas)
    tables = {t["table_name"]: t for t in schemas["events"]["db_schema_tables"]}
    assert {"signals", "gate_decisions", "trades", "shadow_trades"} <= set(tables)
    columns = {c["column_name"]: c for c in tables["trades"]["table_columns"]}
    assert {"ts", "symbol", "pnl_bps", "date"} <= set(columns)
    assert columns["pnl_bps"]["xdbc_type_name"] == "DOUBLE"


def test_get_table_schema_and_table_types(conn):
    schema = conn.adbc_get_table_schema("trades", db_schema_filter="events")
    assert schema.field("pnl_bps").type == pa.float64()
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    # Descriptions travel as field metadata (DBeaver shows them as remarks;
    # the ADBC driver does not copy them into get_objects).
    remarks = schema.field("pnl_bps").metadata[b"ARROW:FLIGHT:SQL:REMARKS"]
    assert b"basis points" in remarks
    assert set(conn.adbc_get_table_types()) == {"TABLE", "VIEW"}


# -- queries ----------------------------------------------------------------


def test_execute_without_parameters(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT symbol, count(*) AS n FROM signals GROUP BY symbol ORDER BY symbol")
        table = cur.fetch_arrow_table()
    assert table.num_rows >= 3
    assert sum(table.column("n").to_pylist()) == scalar(conn, "SELECT count(*) FROM signals")


def test_execute_with_parameters(conn):
    literal = scalar(
        conn, "SELECT count(*) FROM trades WHERE symbol = 'BTC-USD' AND kind = 'OPEN'"
    )
    bound = scalar(
        conn, "SELECT count(*) FROM trades WHERE symbol = ? AND kind = ?", ("BTC-USD", "OPEN")
    )
    assert literal > 0
    assert bound == literal


def test_fetch_df_and_fetch_polars(conn):
    sql = "SELECT mode, avg(pnl_bps) AS avg_pnl_bps, count(*) AS n FROM trades WHERE kind = 'CLOSE' GROUP BY mode ORDER BY mode"
    with conn.cursor() as cur:
        cur.execute(sql)
        df = cur.fetch_df()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["mode", "avg_pnl_bps", "n"]
    with conn.cursor() as cur:
        cur.execute(sql)
        frame = cur.fetch_polars()
    assert isinstance(frame, pl.DataFrame)
    assert frame["n"].to_list() == df["n"].to_list()
    read = pl.read_database(sql, connection=conn)
    assert read["n"].to_list() == df["n"].to_list()


# -- ingest -----------------------------------------------------------------


def gate_decision_rows(signal_id, n):
    now = dt.datetime.now(dt.timezone.utc)
    return pa.table(
        {
            "ts": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "symbol": ["ETH-USD"] * n,
            "decision_id": [f"{signal_id}-d{i}" for i in range(n)],
            "signal_id": [signal_id] * n,
            "trace_id": [f"{signal_id}-t"] * n,
            "gate": ["cost_gate"] * n,
            "result": ["FAIL"] * n,
            "value": [7.2] * n,
            "threshold": [5.0] * n,
            "direction": ["max"] * n,
            "mode": ["scalp"] * n,
            "regime": ["RANGE"] * n,
            "inputs": ['{"spread_bps": 7.2}'] * n,
        }
    )


def test_adbc_ingest_then_query(conn):
    rows = gate_decision_rows("py-ingest-1", 25)
    with conn.cursor() as cur:
        count = cur.adbc_ingest("gate_decisions", rows, mode="append")
    conn.commit()
    assert count == 25
    stored = scalar(conn, "SELECT count(*) FROM gate_decisions WHERE signal_id = ?", ("py-ingest-1",))
    assert stored == 25


def test_ingest_with_a_bad_row_keeps_nothing_and_names_the_row(conn):
    rows = gate_decision_rows("py-ingest-bad", 10).to_pydict()
    rows["value"][4] = float("nan")
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match=r"row 4.*gate_decisions\.value"):
            cur.adbc_ingest("gate_decisions", pa.table(rows), mode="append")
    stored = scalar(conn, "SELECT count(*) FROM gate_decisions WHERE signal_id = 'py-ingest-bad'")
    assert stored == 0


def test_ingest_refuses_timestamps_without_a_zone(conn):
    rows = gate_decision_rows("py-ingest-naive", 3)
    naive = rows.set_column(0, "ts", rows.column("ts").cast(pa.timestamp("us")))
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match=r"column ts: .*has no time zone"):
            cur.adbc_ingest("gate_decisions", naive, mode="append")
    stored = scalar(conn, "SELECT count(*) FROM gate_decisions WHERE signal_id = 'py-ingest-naive'")
    assert stored == 0


def test_ingest_refuses_unknown_tables_and_replace(conn):
    rows = gate_decision_rows("py-ingest-mode", 1)
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match="no event table"):
            cur.adbc_ingest("users", rows, mode="append")
        with pytest.raises(adbc_driver_manager.Error, match="append-only"):
            cur.adbc_ingest("gate_decisions", rows, mode="replace")


# -- pyarrow.flight and authentication ---------------------------------------


def _pb_bytes(field, payload):
    """One length-delimited protobuf field (enough to build a Flight SQL command)."""
    key = (field << 3) | 2
    length, out = len(payload), bytearray([key])
    while True:
        byte = length & 0x7F
        length >>= 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes(out) + payload


def statement_query(sql):
    command = _pb_bytes(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return flight.FlightDescriptor.for_command(_pb_bytes(1, type_url) + _pb_bytes(2, command))


def test_pyarrow_flight_with_basic_token(server):
    client = flight.FlightClient(server["url"])
    header = client.authenticate_basic_token(server["user"], server["password"])
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(statement_query("SELECT count(*) AS n FROM trades"), options)
    assert info.schema.names == ["n"]
    assert len(info.endpoints) == 1 and not info.endpoints[0].locations
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.column("n")[0].as_py() > 0


def test_unauthenticated_calls_are_rejected(server):
    client = flight.FlightClient(server["url"])
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(statement_query("SELECT 1"))
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.authenticate_basic_token(server["user"], "wrong")
    bad = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer forged")])
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(statement_query("SELECT 1"), bad)
    with pytest.raises(adbc_driver_manager.Error):
        with connect(server, password="wrong") as c:
            scalar(c, "SELECT 1")


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE signals",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO signals SELECT * FROM signals",
        "DELETE FROM trades",
        "COPY signals TO '/tmp/quiver-stolen.csv'",
        "SELECT * FROM '/etc/passwd'",
    ],
)
def test_ddl_dml_and_files_are_rejected(conn, sql):
    with pytest.raises(adbc_driver_manager.Error, match="not supported|not found"):
        scalar(conn, sql)


# -- limits -------------------------------------------------------------------


def test_row_cap(conn):
    with pytest.raises(adbc_driver_manager.Error, match="exceeds 100000 rows"):
        scalar(conn, "SELECT value FROM range(200000)")


def test_deadline(conn):
    with pytest.raises(adbc_driver_manager.Error, match="deadline"):
        scalar(conn, "SELECT count(*) FROM range(100000000000) WHERE value % 7 = 3")


def test_memory_limit(conn):
    with pytest.raises(adbc_driver_manager.Error, match="memory limit"):
        scalar(conn, "SELECT array_agg(value) FROM range(50000000)")


def test_concurrent_query_cap(server):
    client = flight.FlightClient(server["url"])
    options = flight.FlightCallOptions(
        headers=[client.authenticate_basic_token(server["user"], server["password"])]
    )
    slow = statement_query("SELECT a.value FROM range(1000) a JOIN range(100000000) b ON a.value = b.value")
    readers = []
    for _ in range(2):
        info = client.get_flight_info(slow, options)
        reader = client.do_get(info.endpoints[0].ticket, options)
        assert reader.schema.names == ["value"]  # the server holds its slot now
        readers.append(reader)
    info = client.get_flight_info(statement_query("SELECT 1"), options)
    with pytest.raises(pa.ArrowException, match="too many queries"):
        client.do_get(info.endpoints[0].ticket, options).read_all()
    for reader in readers:
        reader.cancel()
    client.close()
