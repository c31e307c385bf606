//! The tutorial's examples (docs/tutorial/), run as the chapters show them.

use crate::support::{sqlite3, Illumo, TempDir};
use serde_json::json;

fn run(example: &str, context: &str, extra: &[&str]) -> serde_json::Value {
    Illumo::new()
        .args([
            "run",
            &format!("examples/tutorial/{example}"),
            "-c",
            context,
            "--tracer",
            "none",
            "-q",
        ])
        .args(extra)
        .run()
        .success()
        .ctx()
}

#[test]
fn chapters_one_to_six_give_what_the_tutorial_shows() {
    let c1 = run(
        "01_first_flow.yaml",
        r#"{"user": {"name": "Ada", "city": "Paris"}}"#,
        &[],
    );
    assert_eq!(c1["card"], json!({"text": "Hello Ada!", "from": "Paris"}));
    let c2 = run("02_agent.yaml", r#"{"topic": "tides"}"#, &[]);
    assert!(c2["explanation"]
        .as_str()
        .unwrap()
        .starts_with("The Moon pulls on the sea"));
    let c3 = run(
        "03_branch_loop.yaml",
        r#"{"order": {"items": ["pen", "ink"], "total": 120}}"#,
        &[],
    );
    assert_eq!(
        (&c3["labels"], &c3["shipping"]),
        (
            &json!(["#0 pen", "#1 ink"]),
            &json!("free shipping for 2 items")
        )
    );
    let small = run(
        "03_branch_loop.yaml",
        r#"{"order": {"items": ["pen"], "total": 20}}"#,
        &[],
    );
    assert_eq!(small["shipping"], "shipping costs 5");
    let c4 = run(
        "04_router_agent.yaml",
        r#"{"mail": "My invoice shows the wrong amount"}"#,
        &[],
    );
    assert_eq!(c4["sent"], "to billing (an invoice amount)");
    let c5 = run("05_evaluate.yaml", r#"{"product": "a rain jacket"}"#, &[]);
    assert_eq!(
        c5["final"],
        "Stay dry in any storm: light, breathable, packs into its own pocket. (score 0.9)"
    );
    let c6 = run("06_multi_agent.yaml", r#"{"subject": "honeybees"}"#, &[]);
    assert!(c6["paragraph"]
        .as_str()
        .unwrap()
        .starts_with("Honeybees run a democracy"));
}

#[test]
fn chapter_seven_profiles_decide_what_a_flaky_step_does() {
    let dir = TempDir::new();
    let context = json!({"work_dir": dir.path().join("w")}).to_string();
    let prod = run("07_policies.yaml", &context, &["--profile", "prod"]);
    assert_eq!(prod["report"], "flaky gave: ok");
    let dev = run("07_policies.yaml", &context, &["--profile", "dev"]);
    assert_eq!(dev["report"], "flaky gave: nothing");
    assert_eq!(dev["errors"][0]["action"], "continue");
}

#[test]
fn chapter_eight_traces_to_sqlite() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let ctx = run(
        "08_tracing.yaml",
        r#"{"n": 3}"#,
        &[
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &format!("db_path={}", db.display()),
        ],
    );
    assert_eq!(ctx["result"], "matched");
    assert_eq!(
        sqlite3(
            &db,
            "SELECT group_concat(name, ' ') FROM (SELECT name FROM spans ORDER BY start_time)"
        ),
        "flow tracing double check yes\n"
    );
    assert_eq!(
        sqlite3(&db, "SELECT json_extract(attributes, '$.targets') FROM events WHERE name = 'routing.decision'"),
        "[\"yes\"]\n"
    );
}

#[test]
fn the_chapters_sqlite_queries_give_what_they_show() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let db_arg = format!("db_path={}", db.display());
    run(
        "04_router_agent.yaml",
        r#"{"mail": "My invoice shows the wrong amount"}"#,
        &["--tracer", "sqlite", "--tracer-arg", &db_arg],
    );
    assert_eq!(
        sqlite3(&db, "SELECT json_extract(attributes, '$.targets'), json_extract(attributes, '$.confidence'), json_extract(attributes, '$.reason') FROM events WHERE name = 'routing.decision'"),
        "[\"billing\"]|0.91|an invoice amount\n"
    );
    let context = json!({"work_dir": dir.path().join("w")}).to_string();
    run(
        "07_policies.yaml",
        &context,
        &[
            "--profile",
            "prod",
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &db_arg,
        ],
    );
    assert_eq!(
        sqlite3(&db, "SELECT name, json_extract(attributes, '$.attempt'), status FROM spans WHERE kind = 'node' AND trace_id = (SELECT trace_id FROM spans WHERE kind = 'flow' ORDER BY start_time DESC LIMIT 1) ORDER BY start_time"),
        "prepare|1|OK\nflaky|1|ERROR\nflaky|2|ERROR\nflaky|3|OK\nreport|1|OK\n"
    );
}
