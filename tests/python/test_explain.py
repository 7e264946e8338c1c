"""The gate explainer and the market as-of join through ADBC, and `quiver
explain` and `quiver insights` through the running server."""

import os
import subprocess

import pyarrow as pa

from conftest import quiver_env, scalar

VERDICTS = {"good_block", "bad_block", "good_pass", "bad_pass", "pending"}


def quiver(server, *args):
    return subprocess.run(
        [os.environ["TEST_QUIVER_BIN"], "--config", server["config"], "--data-dir", server["data"], *args],
        env=quiver_env(), capture_output=True, text=True,
    )


def test_gate_explanations_agree_with_the_decisions(conn):
    with conn.cursor() as cur:
        cur.execute(
            """SELECT gate, result, value, threshold, direction, margin, verdict, reason, suggestion,
                      outcome_pnl_bps, traded
               FROM analysis.gate_explanations"""
        )
        df = cur.fetch_df()
    assert len(df) > 100
    assert set(df["verdict"]) <= VERDICTS
    # The margin is the distance on the passing side of the threshold.
    expected = (df["value"] - df["threshold"]).where(df["direction"] == "min", df["threshold"] - df["value"])
    assert ((df["margin"] - expected).abs() < 1e-9).all()
    failed = df[df["result"] == "FAIL"]
    passed = df[df["result"] == "PASS"]
    assert failed["reason"].str.contains(" REJECTED: ").all()
    assert passed["reason"].str.contains(" PASSED: ").all()
    # Only rejections carry a suggestion; only they are blocks.
    assert failed["suggestion"].notna().all() and passed["suggestion"].isna().all()
    assert set(failed["verdict"]) <= {"good_block", "bad_block", "pending"}
    resolved = failed[failed["verdict"] != "pending"]
    assert ((resolved["outcome_pnl_bps"] > 0) == (resolved["verdict"] == "bad_block")).all()


def test_explain_gate_returns_a_struct(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT explain_gate('spread_gate', 'FAIL', 7.2, 5.0, 'max', 'scalp', 'TREND', -12.5, false) AS e"
        )
        table = cur.fetch_arrow_table()
    assert pa.types.is_struct(table.schema.field("e").type)
    e = table.column("e")[0].as_py()
    assert e["reason"] == "spread_gate REJECTED: spread 7.2 bps above the 5 bps maximum"
    assert e["suggestion"] == "needs spread <= 5 bps, now 7.2"
    assert e["verdict"] == "good_block"
    assert abs(e["margin"] + 2.2) < 1e-12


def test_market_context_as_of_is_never_from_the_future(conn):
    late = scalar(
        conn,
        "SELECT count(*) FROM analysis.market_context_asof WHERE context_ts > ts",
    )
    assert late == 0
    covered = scalar(
        conn,
        "SELECT avg(CASE WHEN context_ts IS NULL THEN 0.0 ELSE 1.0 END) FROM analysis.market_context_asof",
    )
    assert covered > 0.99


def test_cli_explains_and_summarises_through_the_server(conn, server):
    signal = scalar(
        conn,
        "SELECT min(signal_id) FROM events.shadow_trades WHERE kind = 'RESOLVED'",
    )
    out = quiver(server, "explain", "--signal", signal)
    assert out.returncode == 0, out.stderr
    assert "REJECTED" in out.stdout and "summary: blocked by" in out.stdout
    day = scalar(conn, "SELECT CAST(max(date) AS VARCHAR) FROM events.trades")
    out = quiver(server, "insights", "--date", day)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Insights for {day}")
