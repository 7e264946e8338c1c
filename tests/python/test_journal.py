"""The journal, registry and learning schemas through ADBC, while the CLI
writes to the registry beside the running server."""

import os
import subprocess

from conftest import quiver_env, scalar


def quiver(server, *args):
    binary = os.environ["TEST_QUIVER_BIN"]
    return subprocess.run(
        [binary, "--data-dir", server["data"], *args],
        check=True,
        env=quiver_env(),
        capture_output=True,
        text=True,
    ).stdout


def test_journal_views_and_tables_match_the_events(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT mode, trades, wins, win_rate FROM journal.v_win_rate_by_mode ORDER BY mode")
        df = cur.fetch_df()
    assert set(df["mode"]) <= {"scalp", "runner"}
    assert df["trades"].sum() > 0
    assert ((df["wins"] / df["trades"] - df["win_rate"]).abs() < 1e-12).all()
    opened = scalar(conn, "SELECT count(*) FROM events.trades WHERE kind = 'OPEN'")
    assert scalar(conn, "SELECT count(*) FROM journal.trades") == opened
    # A bound parameter filters a journal table (pushed down to SQLite).
    scalp = scalar(conn, "SELECT count(*) FROM journal.trades WHERE mode = ?", ("scalp",))
    assert scalp == scalar(conn, "SELECT count(*) FROM events.trades WHERE kind = 'OPEN' AND mode = 'scalp'")


def test_get_objects_lists_the_sqlite_schemas(conn):
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    schemas = {
        s["db_schema_name"]: {t["table_name"] for t in s["db_schema_tables"]}
        for catalog in objects
        for s in catalog["catalog_db_schemas"]
    }
    assert {"trades", "trade_features", "trade_outcomes", "shadow_trades", "v_win_rate_by_mode"} <= schemas["journal"]
    assert {"models", "model_aliases", "config_changes"} <= schemas["registry"]
    assert {"training_sessions", "feature_importance", "calibration", "daily_summary"} <= schemas["learning"]


def test_a_model_registered_by_the_cli_is_live_in_sql(conn, server, tmp_path):
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights for a pytest model")
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(quiver(server, "models", "manifest"))
    model_id = quiver(
        server, "models", "register", str(artifact), "--git-sha", "cafe123", "--data", str(manifest),
        "--metrics", '{"auc": 0.61}', "--alias", "pytest-live",
    ).strip()
    assert len(model_id) == 64
    assert scalar(
        conn, "SELECT model_id FROM registry.v_model_aliases_current WHERE alias = ?", ("pytest-live",)
    ) == model_id
    assert scalar(conn, "SELECT git_sha FROM registry.models WHERE model_id = ?", (model_id,)) == "cafe123"
    # A changed byte on disk is refused on load.
    stored = os.path.join(server["data"], "models", "sha256", model_id)
    with open(stored, "r+b") as f:
        f.write(b"W")
    shown = quiver(server, "models", "show", model_id)
    assert "FAILED" in shown and "tampered" in shown
