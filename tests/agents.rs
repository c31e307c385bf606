//! Agents against a local OpenAI-compatible server (through the real HTTP client), the
//! scripted provider, and record/replay.

use crate::llm_server::{LlmServer, Reply};
use crate::support::{sqlite3, Illumo, TempDir};
use serde_json::{json, Value};

/// An Agent flow pointed at `base_url`, with extra settings and a node policy.
fn agent_flow(base_url: &str, extra: &str, policy: &str) -> String {
    format!(
        "flow:\n  name: ask\n  nodes:\n    ask:\n      type: Agent\n      policy: {policy}\n      setting:\n        provider: openai\n        base_url: {base_url}\n        model: test-model\n        temperature: 0.2\n        system: You answer in one word.\n        prompt: \"Capital of {{{{ $ctx.country }}}}?\"\n        output_path: $ctx.answer\n        metadata_path: $ctx.meta\n{extra}"
    )
}

fn run(flow: &str, args: &[&str]) -> crate::support::Output {
    Illumo::new()
        .run_flow(flow)
        .args(["-c", r#"{"country": "France"}"#])
        .args(args.iter().copied())
        .run()
}

#[test]
fn the_request_carries_the_rendered_prompt_and_the_key_and_the_reply_lands_in_ctx() {
    let server = LlmServer::start(vec![Reply::Text("Paris")]);
    let flow = agent_flow(&server.base_url, "", "{}");
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let out = Illumo::new()
        .run_flow(&flow)
        .args([
            "-c",
            r#"{"country": "France"}"#,
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &format!("db_path={}", db.display()),
        ])
        .env("OPENAI_API_KEY", "sk-test-secret-123")
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["answer"], "Paris");
    assert_eq!(ctx["meta"]["model"], "test-model-2026");
    assert_eq!(
        (
            ctx["meta"]["input_tokens"].clone(),
            ctx["meta"]["output_tokens"].clone()
        ),
        (json!(12), json!(7))
    );
    assert_eq!(ctx["meta"]["finish_reason"], "stop");
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer sk-test-secret-123")
    );
    assert_eq!(
        seen[0].body,
        json!({"model": "test-model", "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "Capital of France?"}],
            "temperature": 0.2})
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT json_extract(attributes, '$.gen_ai.system'), json_extract(attributes, '$.gen_ai.request.model'), json_extract(attributes, '$.gen_ai.usage.input_tokens'), json_extract(attributes, '$.gen_ai.usage.output_tokens') FROM spans WHERE name = 'ask'"
        ),
        "openai|test-model|12|7\n"
    );
    assert_eq!(
        sqlite3(&db, "SELECT name, json_extract(attributes, '$.prompt'), json_extract(attributes, '$.reply') FROM events WHERE name LIKE 'agent.%' ORDER BY id"),
        "agent.request|Capital of France?|\nagent.response||Paris\n"
    );
    let everything = sqlite3(
        &db,
        "SELECT attributes FROM spans UNION ALL SELECT attributes FROM events",
    );
    assert!(
        !everything.contains("sk-test-secret-123"),
        "the key never reaches a trace"
    );
}

#[test]
fn a_429_is_retried_after_the_servers_retry_after() {
    let server = LlmServer::start(vec![
        Reply::Raw {
            status: 429,
            body: r#"{"error": {"message": "slow down"}}"#.into(),
            headers: vec![("retry-after", "1".into())],
        },
        Reply::Text("Paris"),
    ]);
    let dir = TempDir::new();
    let db = dir.path().join("t.db");
    let flow = agent_flow(&server.base_url, "", "{retry: {max_attempts: 2}}");
    let out = run(
        &flow,
        &[
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &format!("db_path={}", db.display()),
        ],
    )
    .success();
    assert_eq!(out.ctx()["answer"], "Paris");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(
        sqlite3(&db, "SELECT json_extract(attributes, '$.delay_ms'), json_extract(attributes, '$.error') FROM events WHERE name = 'node.retry'"),
        format!("1000|openai (test-model) at {}/v1 answered 429: slow down\n", server.base_url)
    );
}

#[test]
fn a_500_is_retried_by_the_policy() {
    let server = LlmServer::start(vec![
        Reply::status(500, "upstream exploded"),
        Reply::Text("Paris"),
    ]);
    let out = run(
        &agent_flow(&server.base_url, "", "{retry: {max_attempts: 2}}"),
        &[],
    )
    .success();
    assert_eq!(out.ctx()["answer"], "Paris");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_400_is_fatal_with_the_servers_message() {
    let server = LlmServer::start(vec![Reply::status(
        400,
        r#"{"error": {"message": "model `test-model` does not exist"}}"#,
    )]);
    let out = run(
        &agent_flow(&server.base_url, "", "{retry: {max_attempts: 3}}"),
        &[],
    )
    .code(1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        format!("error: node `ask` failed on attempt 1 of 3: openai (test-model) at {}/v1 answered 400: model `test-model` does not exist", server.base_url)
    );
    assert_eq!(server.requests().len(), 1, "not retried");
}

#[test]
fn a_malformed_body_names_the_provider_and_model() {
    let server = LlmServer::start(vec![Reply::status(200, "{\"choices\": [oops")]);
    let out = run(&agent_flow(&server.base_url, "", "{}"), &[]).code(1);
    let first = out.stderr.lines().next().unwrap().to_string();
    assert!(
        first.starts_with(&format!("error: node `ask` failed on attempt 1 of 1: malformed answer from openai (test-model) at {}/v1: not JSON (", server.base_url)),
        "{first}"
    );
    assert!(first.ends_with("): {\"choices\": [oops"), "{first}");
}

#[test]
fn a_streamed_reply_is_assembled_with_its_usage() {
    let server = LlmServer::start(vec![Reply::Stream(vec!["Par", "is", "!"])]);
    let out = run(
        &agent_flow(&server.base_url, "        stream: true\n", "{}"),
        &[],
    )
    .success();
    let ctx = out.ctx();
    assert_eq!(ctx["answer"], "Paris!");
    assert_eq!(
        (
            ctx["meta"]["input_tokens"].clone(),
            ctx["meta"]["output_tokens"].clone()
        ),
        (json!(20), json!(4))
    );
    assert_eq!(server.requests()[0].body["stream"], true);
}

#[test]
fn a_slow_reply_is_cut_by_the_timeout_policy() {
    let server = LlmServer::start(vec![Reply::Slow(
        std::time::Duration::from_secs(3),
        Box::new(Reply::Text("late")),
    )]);
    let out = run(&agent_flow(&server.base_url, "", "{timeout: 200ms}"), &[]).code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `ask` failed on attempt 1 of 1: timed out after 200ms")
    );
}

#[test]
fn an_unreachable_server_is_a_retryable_error_that_says_where() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(
        &agent_flow(&format!("http://127.0.0.1:{port}"), "", "{}"),
        &[],
    )
    .code(1);
    let first = out.stderr.lines().next().unwrap().to_string();
    assert!(first.starts_with(&format!("error: node `ask` failed on attempt 1 of 1: cannot reach openai (test-model) at http://127.0.0.1:{port}/v1: ")), "{first}");
}

#[test]
fn invalid_json_gets_one_repair_round_trip_then_is_checked_against_the_schema() {
    let server = LlmServer::start(vec![
        Reply::Text("The capital is Paris."),
        Reply::Text("{\"city\": \"Paris\", \"confidence\": 0.9}"),
    ]);
    let extra = "        response_format: {type: object, required: [city], properties: {city: {type: string}, confidence: {type: number}}}\n        structured_path: $ctx.structured\n";
    let out = run(&agent_flow(&server.base_url, extra, "{}"), &[]).success();
    assert_eq!(
        out.ctx()["structured"],
        json!({"city": "Paris", "confidence": 0.9})
    );
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["response_format"]["type"], "json_schema");
    let repair = &seen[1].body["messages"];
    assert_eq!(
        repair[2],
        json!({"role": "assistant", "content": "The capital is Paris."})
    );
    assert_eq!(
        repair[3]["content"],
        "That reply is not valid: not JSON (expected value at line 1 column 1). Answer again with only the JSON, nothing else."
    );

    let server = LlmServer::start(vec![
        Reply::Text("{\"town\": \"Paris\"}"),
        Reply::Text("{\"town\": \"Paris\"}"),
    ]);
    let out = run(&agent_flow(&server.base_url, extra, "{}"), &[]).code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `ask` failed on attempt 1 of 1: the reply is not valid JSON even after a repair request ($ has no `city`): {\"town\": \"Paris\"}")
    );
}

#[test]
fn history_path_sends_the_conversation_and_appends_to_it() {
    let server = LlmServer::start(vec![Reply::Text("Paris")]);
    let out = run(&agent_flow(&server.base_url, "        history_path: $ctx.chat\n", "{}"), &["--set", r#"chat=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]"#])
        .success();
    assert_eq!(
        out.ctx()["chat"],
        json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
               {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}])
    );
    assert_eq!(
        server.requests()[0].body["messages"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

const ROUTER: &str = "flow:\n  nodes:\n    pick:\n      type: RouterAgent\n      policy: {retry: {max_attempts: 2}}\n      setting:\n        provider: scripted\n        responses: replies.yaml\n        prompt: \"Where does {{ $ctx.q }} go?\"\n        choices: {refund: billing, crash: bugs}\n    billing: {type: Set, setting: {value: b}, outputs: $ctx.went}\n    bugs: {type: Set, setting: {value: x}, outputs: $ctx.went}\n  edges:\n    - pick >> (billing | bugs)\n";

#[test]
fn a_router_agent_accepts_json_or_a_bare_label_and_retries_a_reply_that_picks_nothing() {
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "replies:\n  pick:\n    - \"I am not sure, maybe weather?\"\n    - \" Crash.\"\n",
    )
    .unwrap();
    let out = illumo
        .run_flow(ROUTER)
        .args(["-c", r#"{"q": "app dies"}"#, "--tracer", "console"])
        .run()
        .success();
    assert_eq!(out.ctx()["went"], "x");
    assert_eq!(
        out.ctx()["routing"]["pick"],
        json!({"target": "bugs", "confidence": null, "reason": null})
    );
    assert!(
        out.stderr.contains("the reply picks none of the choices (`refund`, `crash`): I am not sure, maybe weather?"),
        "{}",
        out.stderr
    );
}

#[test]
fn router_agent_choices_must_be_edges() {
    let flow = ROUTER.replace(
        "  edges:\n    - pick >> (billing | bugs)\n",
        "  edges:\n    - pick >> billing\n",
    );
    let illumo = Illumo::new();
    std::fs::write(illumo.dir().join("replies.yaml"), "replies: {}\n").unwrap();
    let path = illumo.flow_file(&flow);
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    assert_eq!(
        out.stderr,
        format!("error: choice `bugs` of `pick` is not one of its outgoing edges\n  --> {path}:10:43\n   |\n10 |         choices: {{refund: billing, crash: bugs}}\n   |                                           ^^^^\n   = help: add the edge `pick >> bugs`\n\nerror: {path} has 1 error\n")
    );
}

#[test]
fn a_scripted_miss_names_the_node_and_the_prompt() {
    let illumo = Illumo::new();
    std::fs::write(illumo.dir().join("replies.yaml"), "replies:\n  pick: []\n").unwrap();
    let out = illumo
        .run_flow(ROUTER)
        .args(["-c", r#"{"q": "app dies"}"#])
        .run()
        .code(1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        format!(
            "error: node `pick` failed on attempt 1 of 2: scripted replies `{}` have nothing for node `pick` (call 1), and no `match` pattern fits its prompt: `Where does app dies go?`",
            illumo_dir_file(&out, "replies.yaml")
        )
    );
}

/// The scripted file path as the flow resolved it (the test's temp folder).
fn illumo_dir_file(out: &crate::support::Output, name: &str) -> String {
    let start = out.stderr.find("scripted replies `").unwrap() + "scripted replies `".len();
    let path = &out.stderr[start..start + out.stderr[start..].find('`').unwrap()];
    assert!(path.ends_with(name), "{path}");
    path.to_string()
}

#[test]
fn scripted_match_patterns_answer_any_node() {
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "match:\n  - {pattern: '(?i)APP DIES', reply: refund}\n",
    )
    .unwrap();
    let out = illumo
        .run_flow(ROUTER)
        .args(["-c", r#"{"q": "app dies"}"#])
        .run()
        .success();
    assert_eq!(out.ctx()["went"], "b");
}

#[test]
fn record_then_replay_gives_the_same_run_without_the_server() {
    let server = LlmServer::start(vec![Reply::Text("Paris")]);
    let dir = TempDir::new();
    let cassette = dir.path().join("cassette.jsonl");
    let flow = agent_flow(&server.base_url, "", "{}");
    let recorded = run(&flow, &["--llm", &format!("record={}", cassette.display())])
        .success()
        .ctx();
    let lines = std::fs::read_to_string(&cassette).unwrap();
    let entry: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(entry["node"], "ask");
    assert_eq!(entry["response"]["text"], "Paris");
    assert_eq!(entry["hash"].as_str().map(str::len), Some(16));

    // The server is gone: a replay needs no network.
    let dead = agent_flow("http://127.0.0.1:9", "", "{}");
    let replayed = run(&dead, &["--llm", &format!("replay={}", cassette.display())])
        .success()
        .ctx();
    assert_eq!(replayed["answer"], recorded["answer"]);
    assert_eq!(server.requests().len(), 1);

    let changed = dead.replace("Capital of", "Largest city of");
    let out = run(
        &changed,
        &["--llm", &format!("replay={}", cassette.display())],
    )
    .code(1);
    let first = out.stderr.lines().next().unwrap().to_string();
    assert!(first.starts_with(&format!("error: node `ask` failed on attempt 1 of 1: cassette `{}` has no reply for node `ask` (request ", cassette.display())), "{first}");
    assert!(
        first.ends_with(
            ": `Largest city of France?`); the prompt or settings changed since it was recorded"
        ),
        "{first}"
    );
}

#[test]
fn a_bad_llm_mode_is_a_usage_error() {
    Illumo::new()
        .args(["run", "examples/agents/hello.yaml", "--llm", "cassette.jsonl"])
        .run()
        .code(2)
        .stderr("error: --llm `cassette.jsonl`: expected `scripted=FILE`, `record=FILE` or `replay=FILE` (without --llm, agents call their providers)\n");
}

const REVIEW: &str = "flow:\n  nodes:\n    check:\n      type: ReviewAgent\n      policy: {retry: {max_attempts: 2}}\n      setting:\n        provider: scripted\n        responses: replies.yaml\n        prompt: \"Review {{ $ctx.text }}\"\n";

#[test]
fn reviews_are_parsed_strictly() {
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "replies:\n  check:\n    - '{\"status\": \"maybe\", \"score\": 0.5}'\n    - 'Sure: {\"status\": \"ng\", \"score\": 0.4, \"reasons\": \"too long\", \"summary\": \"Shorten it.\"}'\n",
    )
    .unwrap();
    let out = illumo
        .run_flow(REVIEW)
        .args(["-c", r#"{"text": "x"}"#, "--tracer", "console"])
        .run()
        .success();
    assert_eq!(
        out.ctx()["review"],
        json!({"status": "NG", "score": 0.4, "reasons": ["too long"], "summary": "Shorten it."})
    );
    assert!(out.stderr.contains("the review is not valid (`status` must be \"OK\" or \"NG\"): {\"status\": \"maybe\", \"score\": 0.5}"), "{}", out.stderr);
}

#[test]
fn an_evaluation_agent_derives_the_status_from_the_score() {
    let flow = REVIEW.replace("ReviewAgent", "EvaluationAgent").replace(
        "prompt:",
        "pass_score: 0.8\n        review_path: $ctx.eval\n        prompt:",
    );
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "replies:\n  check:\n    - '{\"score\": 0.85, \"reasons\": [\"good\"]}'\n",
    )
    .unwrap();
    let out = illumo
        .run_flow(&flow)
        .args(["-c", r#"{"text": "x"}"#])
        .run()
        .success();
    assert_eq!(
        out.ctx()["eval"],
        json!({"status": "OK", "score": 0.85, "reasons": ["good"], "summary": ""})
    );
}

#[test]
fn a_draft_agent_needs_a_diff_that_parses() {
    let flow = "flow:\n  nodes:\n    draft:\n      type: DraftAgent\n      policy: {retry: {max_attempts: 2}}\n      setting:\n        provider: scripted\n        responses: replies.yaml\n        prompt: Fix it\n";
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "replies:\n  draft:\n    - I would change the minus to a plus.\n    - |\n      Here is the fix:\n      ```diff\n      --- a/calc.py\n      +++ b/calc.py\n      @@ -1,2 +1,2 @@\n       def add(a, b):\n      -    return a - b\n      +    return a + b\n      ```\n",
    )
    .unwrap();
    let out = illumo
        .run_flow(flow)
        .args(["--tracer", "console"])
        .run()
        .success();
    assert_eq!(
        out.ctx()["diff"]["proposed"],
        "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
    );
    assert!(out.stderr.contains("no unified diff in the reply (expected `--- a/file`, `+++ b/file` and `@@` hunks): I would change the minus to a plus."), "{}", out.stderr);
}

#[test]
fn agent_settings_are_checked_at_load() {
    let flow = "flow:\n  nodes:\n    a:\n      type: Agent\n      setting: {provider: opneai, prompt: hi, choices: [x]}\n";
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    assert_eq!(
        out.stderr,
        format!("error: node `a`: `Agent` has no setting `choices`\n --> {path}:5:47\n  |\n5 |       setting: {{provider: opneai, prompt: hi, choices: [x]}}\n  |                                               ^^^^^^^\n\nerror: {path} has 1 error\n")
    );
}

#[test]
fn llm_scripted_answers_every_agent_of_a_run_from_one_file() {
    let illumo = Illumo::new();
    let replies = illumo.dir().join("all.yaml");
    std::fs::write(&replies, "replies:\n  ask:\n    - Lyon\n").unwrap();
    // The flow names a live server that does not exist; --llm scripted never calls it.
    let flow = agent_flow("http://127.0.0.1:9", "", "{}");
    let out = illumo
        .run_flow(&flow)
        .args([
            "-c",
            r#"{"country": "France"}"#,
            "--llm",
            &format!("scripted={}", replies.display()),
        ])
        .run()
        .success();
    assert_eq!(out.ctx()["answer"], "Lyon");
    assert_eq!(out.ctx()["meta"]["provider"], "scripted");
}

#[test]
fn a_router_agent_keeps_a_valid_choice_and_drops_a_confidence_out_of_range() {
    let illumo = Illumo::new();
    std::fs::write(illumo.dir().join("replies.yaml"), "replies:\n  pick:\n    - '{\"choice\": \"crash\", \"confidence\": -9, \"reason\": \"x\"}'\n").unwrap();
    let out = illumo
        .run_flow(ROUTER)
        .args(["-c", r#"{"q": "app dies"}"#])
        .run()
        .success();
    assert_eq!(
        out.ctx()["routing"]["pick"],
        json!({"target": "bugs", "confidence": null, "reason": "x"})
    );
}

#[test]
fn a_server_that_refuses_json_schema_gets_plainer_formats() {
    let refused = r#"{"detail": [{"type": "literal_error", "loc": ["body", "response_format", "type"], "msg": "Input should be 'text' or 'json_object'", "input": "json_schema"}]}"#;
    let server = LlmServer::start(vec![
        Reply::status(500, refused),
        Reply::Text(r#"{"choice": "refund", "confidence": 0.7, "reason": "money"}"#),
    ]);
    let flow = format!(
        "flow:\n  nodes:\n    pick:\n      type: RouterAgent\n      setting:\n        base_url: {}\n        model: tiny\n        prompt: \"Where does {{{{ $ctx.q }}}} go?\"\n        choices: {{refund: billing, crash: bugs}}\n    billing: {{type: Set, setting: {{value: b}}, outputs: $ctx.went}}\n    bugs: {{type: Set, setting: {{value: x}}, outputs: $ctx.went}}\n  edges:\n    - pick >> (billing | bugs)\n",
        server.base_url
    );
    let out = Illumo::new()
        .run_flow(&flow)
        .args(["-c", r#"{"q": "my refund"}"#])
        .run()
        .success();
    assert_eq!(out.ctx()["went"], "b");
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["response_format"]["type"], "json_schema");
    assert_eq!(seen[1].body["response_format"]["type"], "json_object");
    assert_eq!(
        seen[1].body["response_format"]["schema"]["properties"]["choice"]["enum"],
        json!(["refund", "crash"])
    );
}

#[test]
fn a_streamed_character_split_across_reads_stays_whole() {
    let event =
        b"data: {\"choices\": [{\"delta\": {\"content\": \"h\xc3\xa9llo\"}}]}\n\ndata: [DONE]\n\n"
            .to_vec();
    let split = event.iter().position(|b| *b == 0xc3).unwrap() + 1;
    let server = LlmServer::start(vec![Reply::Chunks(vec![
        event[..split].to_vec(),
        event[split..].to_vec(),
    ])]);
    let out = run(
        &agent_flow(&server.base_url, "        stream: true\n", "{}"),
        &[],
    )
    .success();
    assert_eq!(out.ctx()["answer"], "héllo");
}

#[test]
fn a_replay_takes_the_same_format_fallback_as_the_recorded_run() {
    let refused =
        r#"{"detail": "Input should be 'text' or 'json_object'", "input": "json_schema"}"#;
    let server = LlmServer::start(vec![
        Reply::status(500, refused),
        Reply::Text(r#"{"status": "OK", "score": 0.9, "reasons": [], "summary": "fine"}"#),
    ]);
    let dir = TempDir::new();
    let cassette = dir.path().join("review.jsonl");
    let flow = |base: &str| {
        format!("flow:\n  nodes:\n    check:\n      type: ReviewAgent\n      setting: {{base_url: \"{base}\", model: tiny, prompt: \"Review it\"}}\n")
    };
    let recorded = Illumo::new()
        .run_flow(&flow(&server.base_url))
        .args(["--llm", &format!("record={}", cassette.display())])
        .run()
        .success();
    assert_eq!(recorded.ctx()["review"]["status"], "OK");
    assert_eq!(
        std::fs::read_to_string(&cassette).unwrap().lines().count(),
        2,
        "the refusal is recorded too"
    );
    let replayed = Illumo::new()
        .run_flow(&flow("http://127.0.0.1:9"))
        .args(["--llm", &format!("replay={}", cassette.display())])
        .run()
        .success();
    assert_eq!(replayed.ctx()["review"], recorded.ctx()["review"]);
}

#[test]
fn a_scripted_file_mistake_names_its_place() {
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "replies:\n  pick:\n    - {text: crash}\n",
    )
    .unwrap();
    let path = illumo.flow_file(ROUTER);
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    let first = out.stderr.lines().next().unwrap().to_string();
    assert!(
        first.starts_with("error: node `pick`: scripted replies `"),
        "{first}"
    );
    assert!(first.ends_with("replies.yaml`: `replies.pick[0]` has an unknown key `text`; a reply is a string or {reply, usage, tool_calls}"), "{first}");
}

#[test]
fn a_streamed_event_may_spread_its_data_over_several_lines() {
    // One event, its JSON split over two `data:` lines (joined with a newline), then a
    // comment and CRLF line ends.
    let events = b": ping\r\ndata: {\"choices\": [{\"delta\":\r\ndata: {\"content\": \"Par\"}}]}\r\n\r\ndata: {\"choices\": [{\"delta\": {\"content\": \"is\"}, \"finish_reason\": \"stop\"}]}\n\ndata: [DONE]\n\n".to_vec();
    let server = LlmServer::start(vec![Reply::Chunks(vec![events])]);
    let out = run(
        &agent_flow(&server.base_url, "        stream: true\n", "{}"),
        &[],
    )
    .success();
    assert_eq!(out.ctx()["answer"], "Paris");
    assert_eq!(out.ctx()["meta"]["finish_reason"], "stop");
}

#[test]
fn an_llm_block_gives_every_agent_its_defaults() {
    let server = LlmServer::start(vec![Reply::Text("one"), Reply::Text("two")]);
    let flow = "flow:
  llm: {provider: openai, base_url: '{{ $env.TEST_LLM_URL }}', model: '{{ $env.TEST_LLM_MODEL }}', temperature: 0.1, top_p: 0.9, seed: 7, stop: [END]}
  nodes:
    first: {type: Agent, setting: {prompt: first}, outputs: $ctx.a}
    second: {type: Agent, setting: {prompt: second, model: own-model}, outputs: $ctx.b}
  edges:
    - first >> second
".to_string();
    let out = Illumo::new()
        .run_flow(&flow)
        .args(["--quiet"])
        .env("TEST_LLM_URL", &server.base_url)
        .env("TEST_LLM_MODEL", "env-model")
        .run()
        .success();
    assert_eq!(
        (&out.ctx()["a"], &out.ctx()["b"]),
        (&json!("one"), &json!("two"))
    );
    let requests = server.requests();
    let pick = |i: usize, key: &str| requests[i].body[key].clone();
    assert_eq!(
        (pick(0, "model"), pick(1, "model")),
        (json!("env-model"), json!("own-model"))
    );
    for i in 0..2 {
        assert_eq!(
            (
                pick(i, "temperature"),
                pick(i, "top_p"),
                pick(i, "seed"),
                pick(i, "stop")
            ),
            (json!(0.1), json!(0.9), json!(7), json!(["END"]))
        );
    }
}

#[test]
fn openai_without_a_key_is_an_error_before_any_request() {
    let flow = "flow:\n  nodes:\n    ask: {type: Agent, setting: {provider: openai, prompt: hi}}\n";
    let out = Illumo::new()
        .run_flow(flow)
        .args(["--quiet"])
        .env("OPENAI_API_KEY", "")
        .env("OPENAI_BASE_URL", "")
        .run()
        .code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `ask` failed on attempt 1 of 1: openai (gpt-4.1-mini) at https://api.openai.com/v1 needs an API key: set OPENAI_API_KEY (or `api_key_env` to the variable that holds it)")
    );
}

#[test]
fn openai_base_url_from_the_environment_is_honoured() {
    let server = LlmServer::start(vec![Reply::Text("proxied")]);
    let flow = "flow:\n  nodes:\n    ask: {type: Agent, setting: {provider: openai, prompt: hi}, outputs: $ctx.a}\n";
    let out = Illumo::new()
        .run_flow(flow)
        .args(["--quiet"])
        .env("OPENAI_BASE_URL", &format!("{}/v1", server.base_url))
        .env("OPENAI_API_KEY", "sk-test-1234")
        .run()
        .success();
    assert_eq!(out.ctx()["a"], "proxied");
    assert_eq!(server.requests()[0].path, "/v1/chat/completions");
}

#[test]
fn model_and_base_url_may_not_read_ctx() {
    let illumo = Illumo::new();
    let path = illumo.flow_file("flow:\n  nodes:\n    ask: {type: Agent, setting: {provider: ollama, model: '{{ $ctx.model }}', prompt: hi}}\n");
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `ask`: `model` may name environment variables (`{{ $env.NAME }}`) but not ctx: it is set when the flow loads")
    );
}

#[test]
fn without_a_retry_policy_an_agent_still_tries_a_passing_failure_twice_more() {
    let server = LlmServer::start(vec![
        Reply::status(503, "warming up"),
        Reply::Raw {
            status: 429,
            body: r#"{"error": {"message": "slow down"}}"#.into(),
            headers: vec![("retry-after", "0".into())],
        },
        Reply::Text("Paris"),
    ]);
    let dir = TempDir::new();
    let db = dir.path().join("t.db");
    let out = run(
        &agent_flow(&server.base_url, "", "{}"),
        &[
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &format!("db_path={}", db.display()),
            "--quiet",
        ],
    )
    .success();
    assert_eq!(out.ctx()["answer"], "Paris");
    assert_eq!(server.requests().len(), 3);
    assert_eq!(
        sqlite3(&db, "SELECT json_extract(attributes, '$.try'), json_extract(attributes, '$.wait_ms') FROM events WHERE name = 'agent.retry' ORDER BY id"),
        "2|500\n3|0\n"
    );
}

#[test]
fn a_server_that_refuses_tools_says_so() {
    let server = LlmServer::start(vec![Reply::status(
        400,
        r#"{"error": {"message": "tools are not supported by this model"}}"#,
    )]);
    let flow = agent_flow(&server.base_url, "        tools: [python]\n", "{}");
    let out = run(&flow, &["--quiet"]).code(1);
    assert_eq!(
        out.stderr.lines().next().map(str::to_string),
        Some(format!("error: node `ask` failed on attempt 1 of 1: openai (test-model) at {}/v1 answered 400: tools are not supported by this model; this server or model does not take `tools`: use one with tool calling (llama.cpp: a chat format with function calling), or drop `tools`", server.base_url))
    );
}

/// A profile's `llm:` replaces the flow's defaults for every agent: a local model in dev
/// without editing the agents.
#[test]
fn a_profile_points_every_agent_at_another_model() {
    let server =
        crate::llm_server::LlmServer::start(vec![crate::llm_server::Reply::Text("local says hi")]);
    let dir = crate::support::TempDir::new();
    dir.write(
        "flow.yaml",
        &format!(
            "flow:\n  name: p\n  llm: {{provider: openai, model: hosted-large, api_key_env: HOSTED_KEY}}\n  profiles:\n    dev: {{llm: {{base_url: '{}', model: local-small, api_key_env: LOCAL_KEY}}}}\n  nodes:\n    talk: {{type: Agent, setting: {{prompt: hi}}, outputs: $ctx.said}}\n",
            server.base_url
        ),
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-q",
            "--tracer",
            "none",
            "--profile",
            "dev",
            "--print",
            "said",
        ])
        .env("LOCAL_KEY", "local-key-1")
        .run()
        .success();
    assert_eq!(out.stdout, "local says hi\n");
    let seen = server.requests();
    assert_eq!(seen[0].body["model"], "local-small");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer local-key-1"));
    dir.write("bad.yaml", "flow:\n  profiles:\n    dev: {llm: {modle: x}}\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n");
    let bad = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "bad.yaml"])
        .run()
        .code(2);
    assert!(
        bad.stderr
            .starts_with("error: unknown key `modle` in `llm`\n --> bad.yaml:3:17\n"),
        "{}",
        bad.stderr
    );
}

/// A reply in words is read as illumo-flow reads it: the first choice, in order, that it
/// contains (ignoring case), else its first word.
#[test]
fn a_router_agent_finds_a_choice_inside_a_reply_in_words() {
    for (reply, went) in [
        ("This looks like a Refund request to me.", "b"),
        ("crash-reports go to engineering; refund? no", "b"),
        ("Crash: the app dies on start", "x"),
    ] {
        let illumo = Illumo::new();
        std::fs::write(
            illumo.dir().join("replies.yaml"),
            format!(
                "replies:\n  pick:\n    - {}\n",
                serde_json::to_string(reply).unwrap()
            ),
        )
        .unwrap();
        let out = illumo
            .run_flow(ROUTER)
            .args(["-c", r#"{"q": "x"}"#, "-q"])
            .run()
            .success();
        assert_eq!(out.ctx()["went"], went, "{reply}");
    }
}

/// `output_path` on a RouterAgent gets the chosen node id, as illumo-flow's does.
#[test]
fn a_router_agent_writes_its_choice_to_output_path() {
    let illumo = Illumo::new();
    std::fs::write(illumo.dir().join("replies.yaml"), "replies:\n  pick:\n    - '{\"choice\": \"crash\", \"confidence\": 0.8, \"reason\": \"it dies\"}'\n").unwrap();
    let flow = ROUTER.replace(
        "choices: {refund: billing, crash: bugs}",
        "choices: {refund: billing, crash: bugs}\n        output_path: $ctx.decision",
    );
    let out = illumo
        .run_flow(&flow)
        .args(["-c", r#"{"q": "x"}"#, "-q"])
        .run()
        .success();
    assert_eq!(
        (&out.ctx()["decision"], &out.ctx()["went"]),
        (&json!("bugs"), &json!("x"))
    );
}

/// illumo-flow's EvaluationAgent, as its flows use it: the raw score (0–100), appended to
/// `ctx.metrics.<id>`, the reasons at `metadata_path` and the reply at `structured_path`.
#[test]
fn illumo_flows_evaluation_agent_keeps_the_raw_score_in_metrics() {
    let dir = TempDir::new();
    std::fs::copy(
        crate::support::root().join("tests/illumo_flow/flows/tut05_evaluate_greeting.yaml"),
        dir.path().join("flow.yaml"),
    )
    .unwrap();
    dir.write(
        "r.yaml",
        "replies:\n  review: ['{\"score\": 85, \"reasons\": [\"warm\", \"short\"]}', '70']\n",
    );
    let run = || {
        Illumo::new()
            .in_dir(dir.path())
            .args([
                "run",
                "flow.yaml",
                "-q",
                "--tracer",
                "none",
                "--llm",
                "scripted=r.yaml",
            ])
            .args(["-c", r#"{"messages": {"greeting": "Hello there!"}}"#])
            .run()
            .success()
            .ctx()
    };
    let ctx = run();
    let metrics = &ctx["metrics"];
    assert_eq!(
        (&metrics["score"], &metrics["reason"]),
        (&json!(85), &json!(["warm", "short"]))
    );
    assert_eq!(
        metrics["details"],
        json!({"score": 85, "reasons": ["warm", "short"]})
    );
    let entry = &metrics["review"][0];
    assert_eq!(
        (&entry["score"], &entry["reasons"]),
        (&json!(85), &json!(["warm", "short"]))
    );
    // Python's `datetime.utcnow().isoformat()`, as illumo-flow writes it: no zone.
    let stamp = entry["timestamp"].as_str().unwrap();
    assert!(
        stamp.len() == 26 && stamp.as_bytes()[10] == b'T' && !stamp.ends_with('Z'),
        "{stamp}"
    );
    assert_eq!(
        ctx["payloads"]["review"], 85,
        "the score is the node's output"
    );
    // A bare number: the score, and (as illumo-flow keeps the parsed reply) structured.
    dir.write("r.yaml", "replies:\n  review: ['72']\n");
    let ctx = run();
    let mut entry = ctx["metrics"]["review"][0].clone();
    entry.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(entry, json!({"score": 72, "structured": 72}));
}

/// In a flow written for illumo-flow, what an agent has no path for lands in illumo-flow's
/// `ctx.agents.<id>` bucket: `{timestamp, value}` per slot, a list once the agent ran again.
/// (illumo-flow's code keeps no `history` slot, though its tutorial says it does.)
#[test]
fn illumo_flow_agents_keep_what_has_no_path_in_the_agents_bucket() {
    let dir = TempDir::new();
    dir.write(
        "names.py",
        "def names(payload, ctx):\n    return ctx['names']\n",
    );
    dir.write(
        "flow.yaml",
        "flow:
  entry: names
  nodes:
    names:
      type: illumo_flow.core.FunctionNode
      context: {inputs: {callable: names.names}}
    loop:
      type: illumo_flow.core.LoopNode
      body_route: greet
    greet:
      type: illumo_flow.nodes.Agent
      context:
        inputs:
          prompt: 'Say hello to {{ $ctx.payloads.loop.greet }}'
        metadata_path: $ctx.meta
  edges:
    - names >> loop
    - loop >> greet
    - loop >> loop
",
    );
    dir.write(
        "r.yaml",
        "replies:\n  greet: ['Hello, Ada!', 'Hello, Bo!']\n",
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .args([
            "--llm",
            "scripted=r.yaml",
            "-c",
            r#"{"names": ["Ada", "Bo"]}"#,
        ])
        .run();
    let ctx = out.success().ctx();
    let bucket = &ctx["agents"]["greet"];
    let values = |slot: &str| -> Vec<Value> {
        bucket[slot]
            .as_array()
            .unwrap_or_else(|| panic!("{slot} is not a list: {bucket}"))
            .iter()
            .map(|e| e["value"].clone())
            .collect()
    };
    assert_eq!(
        values("response"),
        [json!("Hello, Ada!"), json!("Hello, Bo!")]
    );
    // Python's `datetime.utcnow().isoformat()`: `2026-12-01T16:10:00.123456`, no zone.
    let stamp = regex_lite::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$").unwrap();
    assert!(
        bucket["response"][0]["timestamp"]
            .as_str()
            .is_some_and(|t| stamp.is_match(t)),
        "{bucket}"
    );
    let keys: Vec<&String> = bucket.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["response"],
        "metadata has its own path, and illumo-flow keeps no history there"
    );
    assert_eq!(
        (&ctx["meta"]["model"], &ctx["meta"]["provider"]),
        (&json!("gpt-4.1-nano"), &json!("scripted")),
        "illumo-flow's default model"
    );
}

/// illumo-flow's RouterAgent, as illumo-flow 0.1.5 runs this flow (its final ctx recorded
/// with a stub model giving the same reply): the prompt ends with its `Choose exactly one
/// of` line (the scripted `match` only answers that prompt), the reply in words is the
/// reason and goes to `metadata_path`, the output is `{choice: input}` and, the input being
/// null, the chosen node gets that map.
#[test]
fn an_illumo_flow_router_agent_asks_and_records_as_illumo_flow_does() {
    let dir = TempDir::new();
    dir.write("mods.py", "def ident(payload):\n    return payload\n");
    dir.write(
        "flow.yaml",
        "flow:
  entry: decide
  nodes:
    decide:
      type: illumo_flow.nodes.RouterAgent
      setting:
        prompt: 'Should we ship or refine {{ $ctx.x }}?'
        choices: [ship, refine]
        output_path: $ctx.route.decision
        metadata_path: $ctx.route.reason
    ship:
      type: illumo_flow.core.FunctionNode
      context: {inputs: {callable: mods.ident}, outputs: $ctx.shipped}
    refine:
      type: illumo_flow.core.FunctionNode
      context: {inputs: {callable: mods.ident}, outputs: $ctx.refined}
  edges:
    - decide >> (ship | refine)
",
    );
    dir.write(
        "r.yaml",
        "match:\n  - {pattern: \"refine 1\\\\?\\n\\nChoose exactly one of: ship, refine\\\\.$\", reply: 'Ship it, looks good'}\n",
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .args(["--llm", "scripted=r.yaml", "-c", r#"{"x": 1}"#])
        .run();
    assert_eq!(
        out.success().ctx(),
        json!({"x": 1, "steps": [{"node_id": "decide", "status": "start"}, {"node_id": "decide", "status": "success"}, {"node_id": "ship", "status": "start"}, {"node_id": "ship", "status": "success"}], "joins": {}, "errors": [], "payloads": {"decide": {"ship": null}, "ship": {"ship": null}}, "routing": {"decide": [{"target": "ship", "reason": "Ship it, looks good"}]}, "agents": {"decide": {}}, "route": {"decision": "ship", "reason": "Ship it, looks good"}, "shipped": {"ship": null}})
    );
}

/// An illumo-flow Agent without a prompt sends its system text alone, as illumo-flow
/// sends no input then; natively a prompt is required.
#[test]
fn an_illumo_flow_agent_without_a_prompt_sends_its_system_text_alone() {
    let server = LlmServer::start(vec![Reply::Text("hi")]);
    let dir = TempDir::new();
    dir.write(
        "flow.yaml",
        &format!(
            "flow:\n  entry: a\n  nodes:\n    a:\n      type: illumo_flow.nodes.Agent\n      setting: {{system: You are terse, model: m1, base_url: '{}'}}\n",
            server.base_url
        ),
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .env("OPENAI_API_KEY", "k")
        .run();
    assert_eq!(out.success().ctx()["payloads"]["a"], "hi");
    assert_eq!(
        server.requests()[0].body["messages"],
        json!([{"role": "system", "content": "You are terse"}])
    );
    dir.write(
        "native.yaml",
        "flow:\n  nodes:\n    a: {type: Agent, setting: {system: You are terse}}\n",
    );
    let native = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "native.yaml", "-q", "--tracer", "none"])
        .run()
        .code(2);
    assert!(
        native
            .stderr
            .starts_with("error: node `a`: an agent needs a `prompt`\n"),
        "{}",
        native.stderr
    );
}
