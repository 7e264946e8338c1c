//! `quiver council` end to end on the metrics fixture, offline: the packet
//! holds what `metrics compute` stored, every built-in claim passes the
//! number verifier, and the summary names the metrics each sentence rests
//! on. The verifier's adversarial cases are unit tests (`council::verify`).

use crate::cli::run_in as run;
use crate::metrics::{DAY, fixture_harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_council_verifies_every_claim_of_a_computed_day() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fixture_harness(&data).await.close();

    // Before `metrics compute` the day has no packet to read.
    let (ok, _, err) = run(&data, &["council", "--date", DAY]);
    assert!(
        !ok && err.contains("quiver metrics compute --date 2026-11-02"),
        "{err}"
    );
    let (ok, _, err) = run(&data, &["metrics", "compute", "--date", DAY]);
    assert!(ok, "{err}");

    let (ok, out, err) = run(&data, &["council", "packet", "--date", DAY]);
    assert!(ok, "{err}");
    let packet: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(packet["date"], DAY);
    let scalp = packet["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "win_rate" && m["dimensions"]["mode"] == "scalp")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        (&scalp["value"], &scalp["unit"], &scalp["target"]),
        (
            &serde_json::json!(0.6),
            &serde_json::json!("ratio"),
            &serde_json::json!(0.55)
        )
    );
    let rules: Vec<&str> = packet["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"bad_blocks"), "{rules:?}");
    assert!(!packet["insights"].as_array().unwrap().is_empty(), "{out}");

    let (ok, out, err) = run(&data, &["council", "--date", DAY, "--json"]);
    assert!(ok, "{err}");
    let outcome: serde_json::Value = serde_json::from_str(&out).unwrap();
    let claims = outcome["claims"].as_u64().unwrap();
    assert!(claims >= 10, "{out}");
    assert_eq!(
        outcome["dropped"],
        serde_json::json!([]),
        "built-in analysts invent nothing"
    );
    assert_eq!(outcome["verified"].as_array().unwrap().len() as u64, claims);
    let summary = outcome["summary"].as_array().unwrap();
    assert!(
        !summary.is_empty()
            && summary
                .iter()
                .all(|s| !s["rests_on"].as_array().unwrap().is_empty())
    );
    // What is off target leads: bad_blocks fired on shadow_good_block_rate.
    assert_eq!(summary[0]["attention"], true, "{out}");

    let (ok, md, err) = run(&data, &["council", "--date", DAY]);
    assert!(ok, "{err}");
    assert!(md.starts_with("# Council summary for 2026-11-02\n"), "{md}");
    assert!(
        md.contains("win_rate{mode=scalp} was 60.0%, on target (55.0%)."),
        "{md}"
    );
    // The summary's sentences, before the council's own account of itself.
    let summary = md.split("\n## The council").next().unwrap();
    assert!(
        md.contains("\n## The council\n\n- analyst risk (built-in): "),
        "{md}"
    );
    for line in summary.lines().filter(|l| l.starts_with("- ")) {
        assert!(
            line.contains("_(rests on `"),
            "every sentence names its metrics: {line}"
        );
    }

    // Hostile dates are refused before anything is read.
    for bad in ["2026-13-01", "yesterday", "2026-11-02; DROP TABLE x"] {
        let (ok, _, err) = run(&data, &["council", "--date", bad]);
        assert!(!ok && err.contains("expected YYYY-MM-DD"), "{bad}: {err}");
    }
}
