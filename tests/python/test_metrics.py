"""The metrics and analysis schemas through ADBC, and `metrics compute`
through the running server."""

import datetime
import os
import subprocess

import polars as pl

from conftest import quiver_env, scalar

STATUSES = {"ok", "warning", "critical", "no_data"}


def test_metric_and_analysis_views_are_listed_and_answer(conn):
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    schemas = {
        s["db_schema_name"]: {t["table_name"] for t in s["db_schema_tables"]}
        for catalog in objects
        for s in catalog["catalog_db_schemas"]
    }
    assert {"win_rate", "expectancy_bps", "gate_pass_rate", "metric_values", "alerts"} <= schemas["metrics"]
    assert len(schemas["metrics"]) > 50
    assert {"gate_block_quality", "gate_threshold_sweep", "trace_bottlenecks"} <= schemas["analysis"]
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM metrics.win_rate")
        df = cur.fetch_df()
    assert list(df.columns) == ["metric", "day", "mode", "value", "unit", "status", "target"]
    assert len(df) > 0
    assert set(df["status"]) <= STATUSES
    assert ((df["value"] >= 0) & (df["value"] <= 1)).all()
    # A bound parameter filters a metric view.
    scalp = scalar(conn, "SELECT count(*) FROM metrics.win_rate WHERE mode = ?", ("scalp",))
    assert scalp == (df["mode"] == "scalp").sum()
    # The derived metric equals its formula over its inputs.
    gap = scalar(
        conn,
        """SELECT max(abs(e.value - (w.value * a.value - (1 - w.value) * l.value)))
           FROM metrics.expectancy_bps e
           JOIN metrics.win_rate w ON w.day = e.day AND w.mode = e.mode
           JOIN metrics.avg_win_bps a ON a.day = e.day AND a.mode = e.mode
           JOIN metrics.avg_loss_bps l ON l.day = e.day AND l.mode = e.mode""",
    )
    assert gap < 1e-9


def test_compute_through_the_server_fills_metric_values(conn, server):
    day = scalar(conn, "SELECT CAST(max(day) AS VARCHAR) FROM metrics.trades_closed")
    out = subprocess.run(
        [os.environ["TEST_QUIVER_BIN"], "--config", server["config"], "--data-dir", server["data"],
         "metrics", "compute", "--date", day],
        env=quiver_env(), capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "computing through the server" in out.stderr
    with conn.cursor() as cur:
        cur.execute("SELECT metric, dimensions, value, status FROM metrics.metric_values WHERE date = CAST(? AS DATE)", (day,))
        values = pl.from_arrow(cur.fetch_arrow_table())
    assert values.height > 40
    assert set(values["status"].to_list()) <= STATUSES
    views = scalar(conn, "SELECT count(*) FROM metrics.win_rate WHERE day = CAST(? AS DATE)", (day,))
    assert values.filter(pl.col("metric") == "win_rate").height == views
