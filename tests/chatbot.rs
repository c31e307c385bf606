//! The support chatbot: the example flow offline, retrieval over the shipped knowledge
//! base, the handoff and `Http` against a real webhook receiver on 127.0.0.1, the audit
//! trail in SQLite, agents' `history_limit`, and `illumo chat` sessions.

use crate::llm_server::{completion, LlmServer, Reply};
use crate::support::{copy_dir, root, sqlite3, Illumo, TempDir};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const EXAMPLE: &str = "examples/multi_agent/chat_bot";

#[test]
fn the_example_answers_from_the_faq_and_audits_the_turn() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let out = Illumo::new()
        .args([
            "run",
            &format!("{EXAMPLE}/faq_flow.yaml"),
            "--context",
            &format!("@{EXAMPLE}/context.json"),
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &format!("db_path={}", db.display()),
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(
        ctx["chat"]["answer"],
        "Open Sign in, choose \"Forgot password\" and follow the link we email you; it works for 30 minutes."
    );
    assert_eq!(ctx["chat"]["confidence"], 0.92);
    assert_eq!(
        ctx["faq"]["retrieved"]["matches"][0]["id"],
        "password-reset"
    );
    assert_eq!(ctx["routing"]["escalate"]["target"], "audit");
    let history = ctx["support"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (
            &history[0]["role"],
            &history[0]["text"],
            &history[0]["session_id"],
            &history[0]["node"]
        ),
        (
            &json!("user"),
            &json!("How do I reset my password?"),
            &json!("s-1001"),
            &json!("audit")
        )
    );
    assert_eq!(
        (&history[1]["role"], &history[1]["confidence"]),
        (&json!("assistant"), &json!(0.92))
    );
    // One query lists a session's conversation.
    assert_eq!(
        sqlite3(&db, "SELECT json_extract(attributes, '$.role') || ': ' || json_extract(attributes, '$.text') FROM events WHERE name = 'audit' AND json_extract(attributes, '$.session_id') = 's-1001' ORDER BY id"),
        "user: How do I reset my password?\nassistant: Open Sign in, choose \"Forgot password\" and follow the link we email you; it works for 30 minutes.\n"
    );
    assert!(
        !root().join(EXAMPLE).join("outbox.jsonl").exists(),
        "a confident answer hands nothing over"
    );
}

/// A copy of the example, to run escalations in (they append to its outbox).
fn example_copy(dir: &TempDir) -> std::path::PathBuf {
    let copy = dir.path().join("chat_bot");
    copy_dir(&root().join(EXAMPLE), &copy);
    let _ = std::fs::remove_file(copy.join("outbox.jsonl"));
    copy
}

#[test]
fn a_low_confidence_answer_is_handed_to_people_through_the_outbox() {
    let dir = TempDir::new();
    let copy = example_copy(&dir);
    let out = Illumo::new()
        .in_dir(&copy)
        .args([
            "run",
            "faq_flow.yaml",
            "-c",
            "@context.json",
            "--tracer",
            "none",
        ])
        .args(["--set", "chat.message=What's the weather on Mars?"])
        .run()
        .success();
    let ctx = out.ctx();
    let outbox = std::fs::read_to_string(copy.join("outbox.jsonl")).unwrap();
    let lines: Vec<&str> = outbox.lines().collect();
    assert_eq!(lines.len(), 1, "{outbox}");
    let ticket: Value = serde_json::from_str(lines[0]).unwrap();
    let id = ticket["ticket_id"].as_str().unwrap();
    assert!(id.starts_with("T-") && id.len() == 12, "{id}");
    assert_eq!(ctx["escalation"]["ticket"], id);
    assert_eq!(ticket["session_id"], "s-1001");
    assert_eq!(ticket["confidence"], 0.3);
    assert_eq!(
        ticket["reason"],
        "the answer's confidence (0.3) is below the threshold"
    );
    assert_eq!(ticket["history"], json!([]));
    assert_eq!(ticket["created_at"].as_str().unwrap().len(), 27);
    assert_eq!(
        ctx["chat"]["answer"],
        format!("I have passed your question to our support team (ticket {id}); a person will reply by email.")
    );
    // A higher threshold sends even a good answer to people; a lower one keeps a weak one.
    let strict = Illumo::new()
        .in_dir(&copy)
        .args([
            "run",
            "faq_flow.yaml",
            "-c",
            "@context.json",
            "--tracer",
            "none",
        ])
        .args([
            "--set",
            "support.threshold=0.95",
            "--print",
            "routing.escalate.target",
        ])
        .run()
        .success();
    assert_eq!(strict.stdout, "human_support\n");
    let lenient = Illumo::new()
        .in_dir(&copy)
        .args([
            "run",
            "faq_flow.yaml",
            "-c",
            "@context.json",
            "--tracer",
            "none",
        ])
        .args([
            "--set",
            "chat.message=What's the weather on Mars?",
            "--set",
            "support.threshold=0.2",
        ])
        .args(["--print", "chat.answer"])
        .run()
        .success();
    assert_eq!(
        lenient.stdout,
        "I could not find this in our help center.\n"
    );
}

#[test]
fn the_greeting_routes_smalltalk_and_requests_for_a_person() {
    let dir = TempDir::new();
    let copy = example_copy(&dir);
    let run = |message: &str| {
        Illumo::new()
            .in_dir(&copy)
            .args([
                "run",
                "faq_flow.yaml",
                "-c",
                "@context.json",
                "--tracer",
                "none",
            ])
            .args(["--set", &format!("chat.message={message}")])
            .run()
            .success()
            .ctx()
    };
    let hello = run("hello!");
    assert_eq!(hello["chat"]["answer"], "Hello! How can I help you today?");
    assert_eq!(hello["routing"]["greeting"]["target"], "smalltalk");
    let person = run("人と話したいです");
    assert_eq!(person["routing"]["greeting"]["target"], "human_support");
    let outbox = std::fs::read_to_string(copy.join("outbox.jsonl")).unwrap();
    let ticket: Value = serde_json::from_str(outbox.lines().next().unwrap()).unwrap();
    assert_eq!(ticket["reason"], "the customer asked for a person");
    assert_eq!(ticket["confidence"], Value::Null);
}

/// The best entry of the shipped knowledge base for each question.
#[test]
fn retrieval_ranks_the_shipped_knowledge_base_in_english_and_japanese() {
    let dir = TempDir::new();
    let kb = root().join(EXAMPLE).join("data/faqs.json");
    dir.write(
        "flow.yaml",
        &format!(
            "flow:\n  name: r\n  nodes:\n    find:\n      type: Retrieve\n      setting: {{knowledge_base: '{}', query: '{{{{ $ctx.q }}}}', top_k: 2}}\n      outputs: $ctx.found\n",
            kb.display()
        ),
    );
    for (question, best) in [
        ("I forgot my password", "password-reset"),
        ("where do I download an invoice pdf", "billing-invoice"),
        ("how can I cancel my subscription", "cancel"),
        ("turn on 2fa", "two-factor"),
        ("パスワードを忘れた", "ja-password"),
        ("返金してほしい", "ja-refund"),
        ("データをエクスポートしたい", "ja-export"),
        ("無料プランとProの違い", "ja-plans"),
    ] {
        let found = Illumo::new()
            .in_dir(dir.path())
            .args([
                "run",
                "flow.yaml",
                "-q",
                "--tracer",
                "none",
                "--set",
                &format!("q={question}"),
            ])
            .run()
            .success()
            .ctx()["found"]
            .clone();
        assert_eq!(found["matches"][0]["id"], best, "{question}: {found}");
        let confidence = found["confidence"].as_f64().unwrap();
        assert!(
            confidence > 0.0 && confidence <= 1.0,
            "{question}: {confidence}"
        );
        assert_eq!(found["matches"].as_array().unwrap().len(), 2);
    }
    let nothing = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-q",
            "--tracer",
            "none",
            "--set",
            "q=pizza recipes",
        ])
        .run()
        .success()
        .ctx();
    assert_eq!(
        nothing["found"],
        json!({"query": "pizza recipes", "matches": [], "confidence": 0.0})
    );
}

#[test]
fn a_bad_knowledge_base_is_a_load_error_with_its_line() {
    let dir = TempDir::new();
    dir.write("kb.json", "[\n  {\"id\": 1, \"question\": \"q\", \"answer\": \"a\"},\n  {\"id\": 2, \"question\": \"q\"}\n]\n");
    dir.write("kb.jsonl", "{\"id\": 1, \"question\": \"q\", \"answer\": \"a\"}\n{\"id\": 2, \"question\": \"q\", \"answer\": \"a\"\n");
    for (file, expected) in [
        (
            "kb.json",
            "the knowledge base `kb.json`:3:28: missing field `answer`",
        ),
        (
            "kb.jsonl",
            "the knowledge base `kb.jsonl`:2:40: EOF while parsing an object",
        ),
        (
            "missing.json",
            "cannot read the knowledge base `missing.json`: ",
        ),
    ] {
        dir.write(
            "flow.yaml",
            &format!("flow:\n  nodes:\n    find: {{type: Retrieve, setting: {{knowledge_base: {file}}}}}\n"),
        );
        let out = Illumo::new()
            .in_dir(dir.path())
            .args(["validate", "flow.yaml"])
            .run()
            .code(2);
        assert!(
            out.stderr
                .starts_with(&format!("error: node `find`: {expected}")),
            "{file}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(" --> flow.yaml:3:"), "{}", out.stderr);
    }
}

fn handoff_flow(url: &str, extra: &str) -> String {
    format!(
        "flow:
  name: desk
  nodes:
    hand:
      type: Handoff
      setting:
        url: '{url}/tickets'
        headers: {{Authorization: 'Bearer {{{{ $env.DESK_TOKEN }}}}'}}
        reason: 'confidence {{{{ $ctx.chat.confidence }}}}'
{extra}
"
    )
}

const TICKET_CTX: &str = r#"{"user": {"session_id": "s-77"}, "chat": {"confidence": 0.25, "history": [{"role": "user", "content": "help"}]}}"#;

#[test]
fn the_handoff_retries_a_failing_desk_and_keeps_the_token_out_of_the_trace() {
    let server = LlmServer::start(vec![
        Reply::status(500, "down"),
        Reply::status(502, "still down"),
        Reply::status(201, r#"{"ticket_id": "DESK-42"}"#),
    ]);
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    dir.write(
        "flow.yaml",
        &handoff_flow(
            &server.base_url,
            "      policy: {retry: {max_attempts: 3, delay: 0.01}}",
        ),
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-c",
            TICKET_CTX,
            "--trace-db",
            "trace.db",
            "-q",
        ])
        .env("DESK_TOKEN", "desk-token-5f2a9c")
        .run()
        .success();
    assert_eq!(out.ctx()["escalation"]["ticket"], "DESK-42");
    let seen = server.requests();
    assert_eq!(seen.len(), 3, "500, 502, then 201");
    let key = seen[0].header("idempotency-key").unwrap().to_string();
    for request in &seen {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/tickets")
        );
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bearer desk-token-5f2a9c")
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.header("idempotency-key"),
            Some(key.as_str()),
            "one key for every retry"
        );
        let ticket = &request.body;
        let id = ticket["ticket_id"].as_str().unwrap();
        assert!(id.starts_with("T-"), "{ticket}");
        assert_eq!(ticket["session_id"], "s-77");
        assert_eq!(ticket["reason"], "confidence 0.25");
        assert_eq!(ticket["confidence"], 0.25);
        assert_eq!(
            ticket["history"],
            json!([{"role": "user", "content": "help"}])
        );
        assert!(ticket["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let trace_id = sqlite3(&db, "SELECT trace_id FROM spans WHERE kind = 'flow'");
    assert!(key.starts_with(trace_id.trim()), "{key}");
    assert_eq!(
        sqlite3(&db, "SELECT group_concat(status, ' ') FROM (SELECT status FROM spans WHERE name = 'hand' ORDER BY start_time)"),
        "ERROR ERROR OK\n"
    );
    let dump = sqlite3(&db, ".dump");
    assert!(
        dump.contains("answered 500: down"),
        "the failures are traced"
    );
    assert!(
        !dump.contains("desk-token-5f2a9c"),
        "the token never reaches the trace"
    );
}

#[test]
fn http_treats_other_4xx_as_fatal_and_a_silent_server_as_a_timeout() {
    let server = LlmServer::start(vec![
        Reply::status(400, r#"{"error": "session_id is required"}"#),
        Reply::Slow(Duration::from_secs(20), Box::new(Reply::status(200, "{}"))),
        Reply::Raw {
            status: 429,
            body: "slow down".into(),
            headers: vec![("Retry-After", "0".into())],
        },
        Reply::status(200, r#"{"ok": true}"#),
    ]);
    let dir = TempDir::new();
    let flow = |extra: &str| {
        format!(
            "flow:\n  name: h\n  nodes:\n    send:\n      type: Http\n      setting: {{method: POST, url: '{}/hook', json: {{n: 1}}{extra}}}\n      policy: {{retry: {{max_attempts: 3, delay: 0.01}}}}\n      outputs: $ctx.sent\n",
            server.base_url
        )
    };
    dir.write("flow.yaml", &flow(""));
    let fatal = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .run()
        .code(1);
    assert!(
        fatal.stderr.starts_with(&format!(
            "error: node `send` failed on attempt 1 of 3: POST {}/hook answered 400: {{\"error\": \"session_id is required\"}}\n",
            server.base_url
        )),
        "{}",
        fatal.stderr
    );
    assert_eq!(server.requests().len(), 1, "a 400 is not retried");

    dir.write(
        "flow.yaml",
        &flow(", timeout: 300ms").replace("max_attempts: 3", "max_attempts: 1"),
    );
    let slow = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .run()
        .code(1);
    assert!(
        slow.stderr.starts_with(&format!(
            "error: node `send` failed on attempt 1 of 1: POST {}/hook: timed out after 300ms",
            server.base_url
        )),
        "{}",
        slow.stderr
    );

    dir.write("flow.yaml", &flow(", query: {tag: 'a b&c'}"));
    let retried = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-q",
            "--tracer",
            "none",
            "--print",
            "sent",
        ])
        .run()
        .success();
    let sent: Value = serde_json::from_str(&retried.stdout).unwrap();
    assert_eq!(
        (&sent["status"], &sent["json"]),
        (&json!(200), &json!({"ok": true}))
    );
    let seen = server.requests();
    assert_eq!(seen.len(), 4, "a 429 is tried again");
    assert_eq!(seen[3].path, "/hook?tag=a%20b%26c");
    assert_eq!(seen[3].body, json!({"n": 1}));
}

#[test]
fn an_agent_sends_only_the_last_messages_of_its_history() {
    let server = LlmServer::start(vec![Reply::Raw {
        status: 200,
        body: completion("fine"),
        headers: vec![],
    }]);
    let dir = TempDir::new();
    dir.write(
        "flow.yaml",
        &format!(
            "flow:\n  nodes:\n    talk:\n      type: Agent\n      setting: {{provider: openai, base_url: '{}', api_key_env: NO_KEY_NEEDED, model: m, prompt: 'and now?', history_path: $ctx.chat.history, history_limit: 2}}\n",
            server.base_url
        ),
    );
    let history: Vec<Value> = (1..=5)
        .map(|i| json!({"role": if i % 2 == 1 { "user" } else { "assistant" }, "content": format!("m{i}")}))
        .collect();
    let out = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .args(["-c", &json!({"chat": {"history": history}}).to_string()])
        .env("NO_KEY_NEEDED", "x")
        .run()
        .success();
    let sent = &server.requests()[0].body["messages"];
    assert_eq!(
        sent,
        &json!([{"role": "assistant", "content": "m4"}, {"role": "user", "content": "m5"}, {"role": "user", "content": "and now?"}])
    );
    assert_eq!(
        out.ctx()["chat"]["history"].as_array().unwrap().len(),
        7,
        "older messages stay in ctx"
    );
}

fn chat(dir: &Path, session: &str, input: &str) -> crate::support::Output {
    Illumo::new()
        .in_dir(dir)
        .args([
            "chat",
            "faq_flow.yaml",
            "--session",
            session,
            "-c",
            "@context.json",
        ])
        .stdin(input)
        .run()
}

#[test]
fn a_chat_session_keeps_its_history_across_processes() {
    let dir = TempDir::new();
    let copy = example_copy(&dir);
    let first = chat(&copy, "s-1", "hello\nHow do I reset my password?\n").success();
    assert_eq!(
        first.stdout,
        "Hello! How can I help you today?\nOpen Sign in, choose \"Forgot password\" and follow the link we email you; it works for 30 minutes.\n"
    );
    assert_eq!(first.stderr, "session s-1 (new)\n");
    let second = chat(&copy, "s-1", "thanks!\n/history\n").success();
    assert_eq!(second.stderr, "session s-1: 2 turns so far\n");
    assert_eq!(
        second.stdout,
        "Hello! How can I help you today?\n\
         user: hello\n\
         assistant: Hello! How can I help you today?\n\
         user: How do I reset my password?\n\
         assistant: Open Sign in, choose \"Forgot password\" and follow the link we email you; it works for 30 minutes.\n\
         user: thanks!\n\
         assistant: Hello! How can I help you today?\n"
    );
    let db = copy.join("chat.db");
    assert_eq!(
        sqlite3(&db, "SELECT id, turns, json_array_length(json_extract(ctx, '$.support.history')) FROM sessions"),
        "s-1|3|6\n",
        "the audit trail the flow keeps grows turn by turn"
    );
    let reset = chat(&copy, "s-1", "/reset\n/history\n").success();
    assert_eq!(reset.stdout, "");
    assert_eq!(
        sqlite3(&db, "SELECT turns FROM sessions WHERE id = 's-1'"),
        "0\n"
    );
    let other = chat(&copy, "s-2", "/nope\n").success();
    assert_eq!(
        other.stderr,
        "session s-2 (new)\nunknown command `/nope`: /history, /reset or /exit\n"
    );
}

/// With no LLM answering (an empty scripted file), `prod` hands the customer to people
/// and `dev` keeps going to the end.
#[test]
fn the_profiles_decide_what_a_failure_does() {
    let dir = TempDir::new();
    let copy = example_copy(&dir);
    std::fs::write(copy.join("empty.yaml"), "replies: {}\n").unwrap();
    let without_a_model = |profile: &str, tracer: &[&str]| {
        Illumo::new()
            .in_dir(&copy)
            .args(["run", "faq_flow.yaml", "-c", "@context.json"])
            .args(["--llm", "scripted=empty.yaml", "--profile", profile, "-q"])
            .args(tracer)
            .run()
            .success()
    };
    let prod = without_a_model("prod", &["--trace-db", "t.db"]);
    let ctx = prod.ctx();
    let ticket = ctx["escalation"]["ticket"].as_str().unwrap();
    assert_eq!(
        ctx["chat"]["answer"],
        format!("I have passed your question to our support team (ticket {ticket}); a person will reply by email.")
    );
    assert_eq!(
        sqlite3(
            &copy.join("t.db"),
            "SELECT json_extract(attributes, '$.target') FROM events WHERE name = 'node.goto'"
        ),
        "human_support\n"
    );
    let dev = without_a_model("dev", &["--tracer", "none"]);
    assert_eq!(
        dev.ctx()["support"]["history"][0]["text"],
        "How do I reset my password?"
    );
}
