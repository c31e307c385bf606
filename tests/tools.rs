//! Agents that call tools: the OpenAI protocol through the real HTTP client against the
//! local test server (plain and streamed), scripted tool calls, node tools, read_file,
//! and the round limit.

use crate::llm_server::{LlmServer, Reply};
use crate::support::{sqlite3, Illumo};
use serde_json::{json, Value};

fn agent(base: &str, extra: &str) -> String {
    format!(
        "flow:\n  nodes:\n    ask:\n      type: Agent\n      setting:\n        provider: openai\n        base_url: {base}\n        model: test-model\n        prompt: What is 2 to the 10th?\n        metadata_path: $ctx.meta\n        tools: [python]\n{extra}      outputs: $ctx.answer\n"
    )
}

fn tool_call_reply(code: &str) -> Reply {
    Reply::Raw {
        status: 200,
        body: json!({
            "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "python", "arguments": json!({"code": code}).to_string()}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10},
        })
        .to_string(),
        headers: vec![],
    }
}

#[test]
fn a_tool_call_runs_and_its_result_goes_back_to_the_model() {
    let server = LlmServer::start(vec![tool_call_reply("2 ** 10"), Reply::Text("1024")]);
    let out = Illumo::new()
        .run_flow(&agent(&server.base_url, ""))
        .args(["--quiet"])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["answer"], "1024");
    assert_eq!(ctx["meta"]["tool_calls"][0]["name"], "python");
    assert_eq!(ctx["meta"]["tool_calls"][0]["result"]["result"], 1024);
    assert_eq!(
        ctx["meta"]["input_tokens"], 32,
        "tokens summed over both rounds"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let tools = &requests[0].body["tools"];
    assert_eq!(tools[0]["type"], "function");
    assert_eq!(tools[0]["function"]["name"], "python");
    assert_eq!(
        tools[0]["function"]["parameters"]["required"],
        json!(["code"])
    );
    let messages = requests[1].body["messages"].as_array().unwrap();
    let n = messages.len();
    assert_eq!(messages[n - 2]["role"], "assistant");
    assert_eq!(messages[n - 2]["tool_calls"][0]["id"], "call_a");
    assert_eq!(
        messages[n - 2]["tool_calls"][0]["function"]["arguments"],
        "{\"code\":\"2 ** 10\"}"
    );
    assert_eq!(messages[n - 1]["role"], "tool");
    assert_eq!(messages[n - 1]["tool_call_id"], "call_a");
    let result: Value = serde_json::from_str(messages[n - 1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&result["success"], &result["result"]),
        (&json!(true), &json!(1024))
    );
}

#[test]
fn streamed_tool_call_deltas_are_put_together() {
    let event = |v: Value| format!("data: {v}\n\n").into_bytes();
    let server = LlmServer::start(vec![
        Reply::Chunks(vec![
            event(
                json!({"model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_s", "type": "function", "function": {"name": "python", "arguments": ""}}]}}]}),
            ),
            event(
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"code\": \"3 *"}}]}}]}),
            ),
            event(
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 7\"}"}}]}}]}),
            ),
            event(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})),
            b"data: [DONE]\n\n".to_vec(),
        ]),
        Reply::Stream(vec!["21"]),
    ]);
    let out = Illumo::new()
        .run_flow(&agent(&server.base_url, "        stream: true\n"))
        .args(["--quiet"])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["answer"], "21");
    assert_eq!(
        ctx["meta"]["tool_calls"][0]["arguments"],
        json!({"code": "3 * 7"})
    );
    assert_eq!(ctx["meta"]["tool_calls"][0]["result"]["result"], 21);
}

#[test]
fn scripted_tool_calls_run_nodes_and_read_files() {
    let illumo = Illumo::new();
    let dir = illumo.dir().to_path_buf();
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("docs/policy.txt"), "Refunds within 30 days.\n").unwrap();
    std::fs::write(
        dir.join("replies.yaml"),
        "replies:\n  ask:\n    - tool_calls:\n        - {name: lookup, arguments: {id: 7}}\n        - {name: read_file, arguments: {path: policy.txt}}\n        - {name: read_file, arguments: {path: ../secret.txt}}\n    - \"Order 7 is shipped; refunds within 30 days.\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("secret.txt"), "s3cr3t").unwrap();
    let db = dir.join("t.db");
    let flow = "flow:
  nodes:
    ask:
      type: Agent
      setting:
        provider: scripted
        responses: replies.yaml
        prompt: Where is order 7, and what is the refund policy?
        metadata_path: $ctx.meta
        tools:
          - {node: lookup, description: Look an order up by id, parameters: {type: object, properties: {id: {type: integer}}}}
          - {name: read_file, root: docs}
      outputs: $ctx.answer
    lookup: {type: Set, setting: {value: {id: 7, status: shipped}}}
";
    let path = illumo.flow_file(flow);
    let out = Illumo::new()
        .args(["run", &path, "--quiet", "--tracer", "sqlite"])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["answer"], "Order 7 is shipped; refunds within 30 days.");
    let calls = &ctx["meta"]["tool_calls"];
    assert_eq!(calls[0]["result"], json!({"id": 7, "status": "shipped"}));
    assert_eq!(
        calls[1]["result"],
        json!({"path": "policy.txt", "content": "Refunds within 30 days.\n"})
    );
    assert_eq!(
        calls[2]["result"],
        json!({"error": "`../secret.txt` cannot be read: `..` would leave the workspace"})
    );
    // The node tool ran as a node of the flow, under the agent, not in the main graph.
    assert_eq!(ctx["steps"], json!([{"node": "ask", "status": "ok"}]));
    assert_eq!(
        sqlite3(&db, "SELECT name FROM events WHERE name LIKE 'agent.tool_%' ORDER BY id"),
        "agent.tool_call\nagent.tool_result\nagent.tool_call\nagent.tool_result\nagent.tool_call\nagent.tool_result\n"
    );
    assert_eq!(
        sqlite3(&db, "SELECT p.name FROM spans c JOIN spans p ON c.parent_id = p.span_id WHERE c.name = 'lookup'"),
        "ask\n"
    );
}

#[test]
fn the_calls_of_one_reply_run_at_once() {
    // Two sandboxed runs: both start before either ends.
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "replies:\n  ask:\n    - {tool_calls: [{name: python, arguments: {code: \"1 + 1\"}}, {name: python, arguments: {code: \"2 + 2\"}}]}\n    - \"2 and 4\"\n",
    )
    .unwrap();
    let db = illumo.dir().join("t.db");
    let path = illumo.flow_file("flow:\n  nodes:\n    ask:\n      type: Agent\n      setting: {provider: scripted, responses: replies.yaml, prompt: sums, tools: [python], metadata_path: $ctx.meta}\n");
    let out = Illumo::new()
        .args(["run", &path, "--quiet", "--tracer", "sqlite"])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .run()
        .success();
    let calls = &out.ctx()["meta"]["tool_calls"];
    assert_eq!(
        (&calls[0]["result"]["result"], &calls[1]["result"]["result"]),
        (&json!(2), &json!(4))
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT name FROM events WHERE name LIKE 'agent.tool_%' ORDER BY id"
        ),
        "agent.tool_call\nagent.tool_call\nagent.tool_result\nagent.tool_result\n"
    );
    // Each call is a span under the agent's, with what went in and came out.
    assert_eq!(
        sqlite3(&db, "SELECT c.name, p.name, c.status, json_extract(c.attributes, '$.input.preview') FROM spans c JOIN spans p ON c.parent_id = p.span_id WHERE c.name LIKE 'tool %' ORDER BY c.start_time"),
        "tool python|ask|OK|{\"code\":\"1 + 1\"}\ntool python|ask|OK|{\"code\":\"2 + 2\"}\n"
    );
}

#[test]
fn going_past_max_tool_rounds_is_a_fatal_error_naming_the_limit() {
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "match:\n  - {pattern: \".\", reply: never}\nreplies:\n  ask:\n    - {tool_calls: [{name: python, arguments: {code: \"1\"}}]}\n    - {tool_calls: [{name: python, arguments: {code: \"2\"}}]}\n    - {tool_calls: [{name: python, arguments: {code: \"3\"}}]}\n",
    )
    .unwrap();
    let flow = "flow:\n  nodes:\n    ask:\n      type: Agent\n      setting: {provider: scripted, responses: replies.yaml, prompt: loop, tools: [python], max_tool_rounds: 2}\n";
    let out = illumo.run_flow(flow).args(["--quiet"]).run().code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `ask` failed on attempt 1 of 1: the model asked for tools more than max_tool_rounds (2) times; the last was `python`")
    );
}

#[test]
fn bad_tool_settings_are_load_errors() {
    let illumo = Illumo::new();
    let path = illumo.flow_file("flow:\n  nodes:\n    ask:\n      type: Agent\n      setting: {provider: openai, model: m, prompt: hi, tools: [pyhton], tool_choice: {name: shell}}\n    other:\n      type: Agent\n      setting: {provider: openai, model: m, prompt: hi, tools: [{node: nowhere}]}\n");
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        errors,
        [
            "error: node `ask`: a tool is `python`, `{node: ID, description, parameters}` or `{name: read_file, root: DIR}`",
            "error: node `ask`: `tool_choice` is `auto`, `required`, `none` or `{name: TOOL}` of a listed tool",
            "error: node `other` runs `nowhere`, which is not a node",
            "error: flow.yaml has 3 errors".replace("flow.yaml", &path).as_str(),
        ]
    );
}

#[test]
fn a_recorded_tool_conversation_replays_offline() {
    let server = LlmServer::start(vec![tool_call_reply("2 ** 10"), Reply::Text("1024")]);
    let illumo = Illumo::new();
    let cassette = illumo.dir().join("tools.cassette.jsonl");
    let path = illumo.flow_file(&agent(&server.base_url, ""));
    let recorded = Illumo::new()
        .args(["run", &path, "--quiet", "--tracer", "none"])
        .args(["--llm", &format!("record={}", cassette.display())])
        .run()
        .success();
    assert_eq!(recorded.ctx()["answer"], "1024");
    assert_eq!(server.requests().len(), 2);
    let replayed = Illumo::new()
        .args(["run", &path, "--quiet", "--tracer", "none"])
        .args(["--llm", &format!("replay={}", cassette.display())])
        .run()
        .success();
    assert_eq!(server.requests().len(), 2, "no request went out on replay");
    assert_eq!(replayed.ctx()["answer"], "1024");
    assert_eq!(
        replayed.ctx()["meta"]["tool_calls"],
        recorded.ctx()["meta"]["tool_calls"]
    );
}
