//! `illumo validate`: one fixture per failure mode, each with its exact message and place.

use crate::support::{Illumo, TempDir};

#[track_caller]
fn validate(fixture: &str, code: i32, expected: &str) {
    let out = Illumo::new()
        .args(["validate", fixture])
        .env("NO_COLOR", "1")
        .run();
    assert_eq!(out.stderr, expected, "fixture {fixture}");
    assert_eq!(out.code, code, "fixture {fixture}");
}

#[test]
fn reports_bad_duration() {
    validate(
        "tests/fixtures/invalid/bad_duration.yaml",
        2,
        r#"error: invalid duration `5 sec` for `timeout`
 --> tests/fixtures/invalid/bad_duration.yaml:3:14
  |
3 |     timeout: 5 sec
  |              ^^^^^ expected a number with a unit: 500ms, 30s, 5m, 1h

error: tests/fixtures/invalid/bad_duration.yaml has 1 error
"#,
    );
}

#[test]
fn reports_bad_on_error() {
    validate(
        "tests/fixtures/invalid/bad_on_error.yaml",
        2,
        r#"error: unknown on_error action `explode`
 --> tests/fixtures/invalid/bad_on_error.yaml:6:26
  |
6 |       policy: {on_error: explode}
  |                          ^^^^^^^ expected `stop`, `continue` or `{action: goto, target: NODE}`

error: tests/fixtures/invalid/bad_on_error.yaml has 1 error
"#,
    );
}

#[test]
fn reports_bad_path() {
    validate(
        "tests/fixtures/invalid/bad_path.yaml",
        2,
        r#"error: node `a`: bad key `` in path `$ctx.user..name`
 --> tests/fixtures/invalid/bad_path.yaml:5:34
  |
5 |       setting: {value: $ctx.user..name}
  |                                  ^

error: node `a`: cannot write to `$env.HOME`
 --> tests/fixtures/invalid/bad_path.yaml:6:16
  |
6 |       outputs: $env.HOME
  |                ^^^^^^^^^ outputs go to a `$ctx.` path

error: tests/fixtures/invalid/bad_path.yaml has 2 errors
"#,
    );
}

#[test]
fn reports_bad_retry_values() {
    validate(
        "tests/fixtures/invalid/bad_retry_values.yaml",
        2,
        r#"error: `retry.max_attempts` must be between 1 and 100, not -1
 --> tests/fixtures/invalid/bad_retry_values.yaml:7:31
  |
7 |         retry: {max_attempts: -1, delay: 2h, mode: linear}
  |                               ^^

error: `retry.delay` `2h` is too long; at most 1h
 --> tests/fixtures/invalid/bad_retry_values.yaml:7:42
  |
7 |         retry: {max_attempts: -1, delay: 2h, mode: linear}
  |                                          ^^

error: unknown retry mode `linear`
 --> tests/fixtures/invalid/bad_retry_values.yaml:7:52
  |
7 |         retry: {max_attempts: -1, delay: 2h, mode: linear}
  |                                                    ^^^^^^ expected `fixed` or `exponential`

error: tests/fixtures/invalid/bad_retry_values.yaml has 3 errors
"#,
    );
}

#[test]
fn reports_condition_syntax() {
    validate(
        "tests/fixtures/invalid/condition_syntax.yaml",
        2,
        r#"error: invalid condition `ctx.score >= `: the condition ends too early
 --> tests/fixtures/invalid/condition_syntax.yaml:8:34
  |
8 |           - {when: "ctx.score >= ", to: done}
  |                                  ^

error: tests/fixtures/invalid/condition_syntax.yaml has 1 error
"#,
    );
}

#[test]
fn reports_condition_unknown_name() {
    validate(
        "tests/fixtures/invalid/condition_unknown_name.yaml",
        2,
        r#"error: invalid condition `review.status == 'OK'`: unknown name `review` in condition
 --> tests/fixtures/invalid/condition_unknown_name.yaml:7:31
  |
7 |     - {from: a, to: b, when: "review.status == 'OK'"}
  |                               ^^^^^^
  = help: conditions read `ctx`, `payload` and `env`; did you mean `ctx.review`?

error: tests/fixtures/invalid/condition_unknown_name.yaml has 1 error
"#,
    );
}

#[test]
fn reports_duplicate_node_id() {
    validate(
        "tests/fixtures/invalid/duplicate_node_id.yaml",
        2,
        r#"error: duplicate node id `draft`
 --> tests/fixtures/invalid/duplicate_node_id.yaml:5:5
  |
5 |     draft: {type: Set, setting: {value: 3}}
  |     ^^^^^ each node id may be used once

error: tests/fixtures/invalid/duplicate_node_id.yaml has 1 error
"#,
    );
}

#[test]
fn reports_edge_syntax() {
    validate(
        "tests/fixtures/invalid/edge_syntax.yaml",
        2,
        r#"error: invalid edge `a > b`: unexpected `>`
 --> tests/fixtures/invalid/edge_syntax.yaml:7:9
  |
7 |     - a > b
  |         ^
  = help: write edges as `a >> b >> c`, `a >> (b | c)` or `(a & b) >> c`

error: tests/fixtures/invalid/edge_syntax.yaml has 1 error
"#,
    );
}

#[test]
fn reports_many_errors() {
    validate(
        "tests/fixtures/invalid/many_errors.yaml",
        2,
        r#"error: `entry` names unknown node `strat`
 --> tests/fixtures/invalid/many_errors.yaml:3:10
  |
3 |   entry: strat
  |          ^^^^^ did you mean `start`?

error: unknown node type `Agnet`
 --> tests/fixtures/invalid/many_errors.yaml:6:13
  |
6 |       type: Agnet
  |             ^^^^^ did you mean `Agent`?
  = help: known types: Agent, Approval, Audit, Command, CustomRoutingNode, DraftAgent, EvaluationAgent, FunctionNode, Handoff, Http, Loop, LoopNode, Patch, PythonExec, Retrieve, ReviewAgent, Router, RouterAgent, ScoreAgent, Set, Subflow, Summary, TestExecutor, WorkspaceInspector

error: invalid duration `10 minutes` for `timeout`
  --> tests/fixtures/invalid/many_errors.yaml:10:25
   |
10 |       policy: {timeout: 10 minutes, on_error: {action: goto, target: drfat}}
   |                         ^^^^^^^^^^ expected a number with a unit: 500ms, 30s, 5m, 1h

error: node `draft` has unknown goto target `drfat`
  --> tests/fixtures/invalid/many_errors.yaml:10:70
   |
10 |       policy: {timeout: 10 minutes, on_error: {action: goto, target: drfat}}
   |                                                                      ^^^^^ did you mean `draft`?

error: an edge names unknown node `nowhere`
  --> tests/fixtures/invalid/many_errors.yaml:12:25
   |
12 |     - start >> draft >> nowhere
   |                         ^^^^^^^

error: tests/fixtures/invalid/many_errors.yaml has 5 errors
"#,
    );
}

#[test]
fn reports_missing_node_type() {
    validate(
        "tests/fixtures/invalid/missing_node_type.yaml",
        2,
        r#"error: node `draft` has no `type`
 --> tests/fixtures/invalid/missing_node_type.yaml:3:5
  |
3 |     draft:
  |     ^^^^^
  = help: add `type: Set` (or another type from `illumo nodes`)

error: tests/fixtures/invalid/missing_node_type.yaml has 1 error
"#,
    );
}

#[test]
fn reports_template_syntax() {
    validate(
        "tests/fixtures/invalid/template_syntax.yaml",
        2,
        r#"error: node `greet`: invalid template: a `{{` is not closed by `}}`, or what is inside is not an expression
 --> tests/fixtures/invalid/template_syntax.yaml:5:49
  |
5 |       setting: {value: "hello {{ $ctx.user.name }"}
  |                                                 ^^
  = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: tests/fixtures/invalid/template_syntax.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_edge_node() {
    validate(
        "tests/fixtures/invalid/unknown_edge_node.yaml",
        2,
        r#"error: an edge names unknown node `reveiw`
 --> tests/fixtures/invalid/unknown_edge_node.yaml:7:16
  |
7 |     - draft >> reveiw
  |                ^^^^^^ did you mean `review`?

error: tests/fixtures/invalid/unknown_edge_node.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_entry() {
    validate(
        "tests/fixtures/invalid/unknown_entry.yaml",
        2,
        r#"error: `entry` names unknown node `strat`
 --> tests/fixtures/invalid/unknown_entry.yaml:2:10
  |
2 |   entry: strat
  |          ^^^^^ did you mean `start`?

error: tests/fixtures/invalid/unknown_entry.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_flow_key() {
    validate(
        "tests/fixtures/invalid/unknown_flow_key.yaml",
        2,
        r#"error: unknown key `max_step` in `flow`
 --> tests/fixtures/invalid/unknown_flow_key.yaml:3:3
  |
3 |   max_step: 10
  |   ^^^^^^^^ did you mean `max_steps`?

error: tests/fixtures/invalid/unknown_flow_key.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_goto_target() {
    validate(
        "tests/fixtures/invalid/unknown_goto_target.yaml",
        2,
        r#"error: node `apply_patch` has unknown goto target `drfat`
 --> tests/fixtures/invalid/unknown_goto_target.yaml:8:49
  |
8 |       policy: {on_error: {action: goto, target: drfat}}
  |                                                 ^^^^^ did you mean `draft`?

error: tests/fixtures/invalid/unknown_goto_target.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_node_key() {
    validate(
        "tests/fixtures/invalid/unknown_node_key.yaml",
        2,
        r#"error: unknown key `output` in node `a`
 --> tests/fixtures/invalid/unknown_node_key.yaml:6:7
  |
6 |       output: $ctx.a
  |       ^^^^^^ did you mean `outputs`?

error: tests/fixtures/invalid/unknown_node_key.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_node_type() {
    validate(
        "tests/fixtures/invalid/unknown_node_type.yaml",
        2,
        r#"error: unknown node type `Sett`
 --> tests/fixtures/invalid/unknown_node_type.yaml:4:13
  |
4 |       type: Sett
  |             ^^^^ did you mean `Set`?
  = help: known types: Agent, Approval, Audit, Command, CustomRoutingNode, DraftAgent, EvaluationAgent, FunctionNode, Handoff, Http, Loop, LoopNode, Patch, PythonExec, Retrieve, ReviewAgent, Router, RouterAgent, ScoreAgent, Set, Subflow, Summary, TestExecutor, WorkspaceInspector

error: tests/fixtures/invalid/unknown_node_type.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_router_target() {
    validate(
        "tests/fixtures/invalid/unknown_router_target.yaml",
        2,
        r#"error: node `route` routes to `rejcet`, which is not a node
 --> tests/fixtures/invalid/unknown_router_target.yaml:9:23
  |
9 |           - {default: rejcet}
  |                       ^^^^^^ did you mean `reject`?

error: tests/fixtures/invalid/unknown_router_target.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_setting_key() {
    validate(
        "tests/fixtures/invalid/unknown_setting_key.yaml",
        2,
        r#"error: node `a`: unknown setting `valeu`, expected `value`
 --> tests/fixtures/invalid/unknown_setting_key.yaml:5:27
  |
5 |       setting: {value: 1, valeu: 2}
  |                           ^^^^^

error: tests/fixtures/invalid/unknown_setting_key.yaml has 1 error
"#,
    );
}

#[test]
fn reports_unknown_top_level_key() {
    validate(
        "tests/fixtures/invalid/unknown_top_level_key.yaml",
        2,
        r#"error: unknown key `flows` in the flow file
 --> tests/fixtures/invalid/unknown_top_level_key.yaml:4:1
  |
4 | flows: {}
  | ^^^^^ did you mean `flow`?

error: tests/fixtures/invalid/unknown_top_level_key.yaml has 1 error
"#,
    );
}

#[test]
fn yaml_syntax_error_points_at_the_break() {
    validate(
        "tests/fixtures/invalid/yaml_syntax.yaml",
        2,
        r#"error: invalid YAML: did not find expected ',' or '}'
 --> tests/fixtures/invalid/yaml_syntax.yaml:5:1
  |
5 | 
  | ^
  = help: while parsing a flow mapping at line 4 column 8

error: tests/fixtures/invalid/yaml_syntax.yaml has 1 error
"#,
    );
}

#[test]
fn warns_cycle_without_exit() {
    validate(
        "tests/fixtures/warnings/cycle_without_exit.yaml",
        0,
        r#"warning: cycle `draft -> review -> draft` has no router, condition or goto to leave it
 --> tests/fixtures/warnings/cycle_without_exit.yaml:6:5
  |
6 |     draft: {type: Set, setting: {value: 1}}
  |     ^^^^^ this loop runs until `max_steps` (20)

"#,
    );
}

#[test]
fn warns_unreachable_node() {
    validate(
        "tests/fixtures/warnings/unreachable_node.yaml",
        0,
        r#"warning: node `orphan` is never reached from entry `a`
 --> tests/fixtures/warnings/unreachable_node.yaml:6:5
  |
6 |     orphan: {type: Set, setting: {value: 3}}
  |     ^^^^^^ no edge, route or goto leads here

"#,
    );
}

#[test]
fn warns_parallel_writes() {
    validate(
        "tests/fixtures/warnings/parallel_writes.yaml",
        0,
        r#"warning: nodes `fast` and `slow` may run in parallel and both write `$ctx.result`
 --> tests/fixtures/warnings/parallel_writes.yaml:8:16
  |
8 |       outputs: $ctx.result.text
  |                ^^^^^^^^^^^ the second write fails the run; give each branch its own path

"#,
    );
}

#[test]
fn reports_duplicate_keys() {
    validate(
        "tests/fixtures/invalid/duplicate_keys.yaml",
        2,
        r#"error: duplicate key `name` in `flow`
 --> tests/fixtures/invalid/duplicate_keys.yaml:3:3
  |
3 |   name: second
  |   ^^^^ a key may appear once; the earlier value would be lost

error: duplicate key `value` in the settings of node `a`
 --> tests/fixtures/invalid/duplicate_keys.yaml:7:27
  |
7 |       setting: {value: 1, value: 2}
  |                           ^^^^^ a key may appear once; the earlier value would be lost

error: tests/fixtures/invalid/duplicate_keys.yaml has 2 errors
"#,
    );
}

#[test]
fn reports_loops_run_each_other() {
    validate(
        "tests/fixtures/invalid/loops_run_each_other.yaml",
        2,
        r#"error: nodes run each other endlessly: `a -> b -> a`
 --> tests/fixtures/invalid/loops_run_each_other.yaml:3:49
  |
3 |     a: {type: Loop, setting: {items: [1], body: b}}
  |                                                 ^ `a` runs `b` here

error: tests/fixtures/invalid/loops_run_each_other.yaml has 1 error
"#,
    );
}

#[test]
fn reports_missing_setting() {
    validate(
        "tests/fixtures/invalid/missing_setting.yaml",
        2,
        r#"error: node `a`: missing setting `value`
 --> tests/fixtures/invalid/missing_setting.yaml:3:5
  |
3 |     a: {type: Set}
  |     ^

error: tests/fixtures/invalid/missing_setting.yaml has 1 error
"#,
    );
}

#[test]
fn reports_template_unknown_helper() {
    validate(
        "tests/fixtures/invalid/template_unknown_helper.yaml",
        2,
        r#"error: node `greet`: invalid template: unknown helper `upcase`; templates have `if`, `unless`, `each`, `with`, `lookup`, `raw`, `log`, `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `and`, `or`, `not`, `len`, `json`
 --> tests/fixtures/invalid/template_unknown_helper.yaml:5:28
  |
5 |       setting: {value: "hi {{ upcase $ctx.user.name }}"}
  |                            ^^
  = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: tests/fixtures/invalid/template_unknown_helper.yaml has 1 error
"#,
    );
}

#[test]
fn reports_template_unknown_root() {
    validate(
        "tests/fixtures/invalid/template_unknown_root.yaml",
        2,
        r#"error: node `greet`: invalid template: `ctx.user.name` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`; did you mean `$ctx.user.name`?
 --> tests/fixtures/invalid/template_unknown_root.yaml:5:28
  |
5 |       setting: {value: "hi {{ ctx.user.name }}"}
  |                            ^^
  = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: tests/fixtures/invalid/template_unknown_root.yaml has 1 error
"#,
    );
}

#[test]
fn warns_router_edge_never_followed() {
    validate(
        "tests/fixtures/warnings/router_edge_never_followed.yaml",
        0,
        r#"warning: edge `route >> audit` is never followed: `route` is a router
  --> tests/fixtures/warnings/router_edge_never_followed.yaml:11:16
   |
11 |     - route >> audit
   |                ^^^^^ add `audit` to the routes of `route` instead

"#,
    );
}

#[test]
fn a_valid_flow_reports_its_size_on_stdout() {
    let out = Illumo::new()
        .args(["validate", "examples/basics/branching.yaml"])
        .run()
        .success();
    assert_eq!(
        out.stdout,
        "ok: `branching` in examples/basics/branching.yaml (5 nodes, 4 edges)\n"
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn a_missing_flow_file_is_a_usage_error() {
    let out = Illumo::new()
        .args(["validate", "no/such/flow.yaml"])
        .run()
        .code(2);
    assert!(
        out.stderr
            .starts_with("error: cannot read flow file `no/such/flow.yaml`: "),
        "{}",
        out.stderr
    );
}

#[test]
fn colour_is_used_only_when_asked_for_by_a_terminal() {
    // Not a terminal here, so no escape codes even without NO_COLOR.
    let out = Illumo::new()
        .args(["validate", "tests/fixtures/invalid/unknown_entry.yaml"])
        .run()
        .code(2);
    assert!(!out.stderr.contains('\x1b'));
}

#[test]
fn condition_carets_do_not_shift_after_a_dollar() {
    validate(
        "tests/fixtures/invalid/condition_carets_after_dollars.yaml",
        2,
        r#"error: invalid condition `$ctx.a == 1 && review == 2`: unknown name `review` in condition
 --> tests/fixtures/invalid/condition_carets_after_dollars.yaml:7:46
  |
7 |     - {from: a, to: b, when: "$ctx.a == 1 && review == 2"}
  |                                              ^^^^^^
  = help: conditions read `ctx`, `payload` and `env`; did you mean `ctx.review`?

error: tests/fixtures/invalid/condition_carets_after_dollars.yaml has 1 error
"#,
    );
    validate(
        "tests/fixtures/invalid/condition_syntax_after_dollar.yaml",
        2,
        r#"error: invalid condition `$ctx.a == (1`: the condition ends too early
 --> tests/fixtures/invalid/condition_syntax_after_dollar.yaml:6:43
  |
6 |     - {from: a, to: b, when: "$ctx.a == (1"}
  |                                           ^

error: tests/fixtures/invalid/condition_syntax_after_dollar.yaml has 1 error
"#,
    );
}

#[test]
fn edge_carets_count_characters_not_bytes() {
    validate(
        "tests/fixtures/invalid/edge_carets_after_wide_names.yaml",
        2,
        r#"error: an edge names unknown node `cé`
 --> tests/fixtures/invalid/edge_carets_after_wide_names.yaml:5:14
  |
5 |     - "aä >> cé"
  |              ^^

error: tests/fixtures/invalid/edge_carets_after_wide_names.yaml has 1 error
"#,
    );
}

#[test]
fn a_loop_body_with_outputs_is_refused() {
    validate(
        "tests/fixtures/invalid/loop_body_outputs.yaml",
        2,
        r#"error: node `check` has `outputs`, but `each` runs it for each item
  --> tests/fixtures/invalid/loop_body_outputs.yaml:10:7
   |
10 |       outputs: $ctx.last
   |       ^^^^^^^ remove it: the body's outputs go into the loop's list
   = help: give `each` the `outputs` instead; other writes of the body (an agent's `metadata_path`) are applied after the loop

error: tests/fixtures/invalid/loop_body_outputs.yaml has 1 error
"#,
    );
}

#[test]
fn every_problem_of_a_node_is_reported_not_only_the_first() {
    validate(
        "tests/fixtures/invalid/every_setting_problem.yaml",
        2,
        r#"error: node `ask`: unknown provider `opneai`; did you mean `openai`?
 --> tests/fixtures/invalid/every_setting_problem.yaml:6:19
  |
6 |         provider: opneai
  |                   ^^^^^^

error: node `ask`: invalid template: a `{{` is not closed by `}}`, or what is inside is not an expression
 --> tests/fixtures/invalid/every_setting_problem.yaml:7:30
  |
7 |         prompt: "hi {{ $ctx.x"
  |                              ^^
  = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: node `ask`: `history_path`: `history` is not a ctx path; write `$ctx.history`
 --> tests/fixtures/invalid/every_setting_problem.yaml:8:23
  |
8 |         history_path: history
  |                       ^^^^^^^

error: node `ask`: `metadata_path`: `$env.HOME` is not a place in ctx; write a `$ctx.` path like `$ctx.result`
 --> tests/fixtures/invalid/every_setting_problem.yaml:9:24
  |
9 |         metadata_path: $env.HOME
  |                        ^^^^^^^^^

error: node `patch`: `diff_path`: `diff.proposed` is not a ctx path; write `$ctx.diff.proposed`
  --> tests/fixtures/invalid/every_setting_problem.yaml:12:45
   |
12 |       setting: {default_root: ., diff_path: diff.proposed, files_path: $ctx.a..b}
   |                                             ^^^^^^^^^^^^^

error: node `patch`: `files_path`: bad key `` in path `$ctx.a..b`
  --> tests/fixtures/invalid/every_setting_problem.yaml:12:72
   |
12 |       setting: {default_root: ., diff_path: diff.proposed, files_path: $ctx.a..b}
   |                                                                        ^^^^^^^^^

error: tests/fixtures/invalid/every_setting_problem.yaml has 6 errors
"#,
    );
}

#[test]
fn schema_keywords_the_reply_check_does_not_know_are_refused() {
    validate(
        "tests/fixtures/invalid/schema_keywords.yaml",
        2,
        r#"error: node `ask`: the reply check does not know `oneOf`; it checks `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minItems`, `maxItems`, `minLength`, `maxLength`, `pattern`
  --> tests/fixtures/invalid/schema_keywords.yaml:13:20
   |
13 |             code: {oneOf: [{type: string}, {type: number}]}
   |                    ^^^^^

error: node `ask`: `pattern` is not a regular expression: found unclosed character class
  --> tests/fixtures/invalid/schema_keywords.yaml:14:29
   |
14 |             zip: {pattern: "(["}
   |                             ^^

error: node `ask`: the reply check does not know `$defs`; it checks `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minItems`, `maxItems`, `minLength`, `maxLength`, `pattern`
  --> tests/fixtures/invalid/schema_keywords.yaml:15:11
   |
15 |           $defs: {}
   |           ^^^^^

error: tests/fixtures/invalid/schema_keywords.yaml has 3 errors
"#,
    );
}

#[test]
fn a_problem_in_a_merged_map_points_at_the_anchored_text() {
    validate(
        "tests/fixtures/invalid/merged_setting_error.yaml",
        2,
        r#"error: node `draft`: `temperature` must be a number, not `hot`
 --> tests/fixtures/invalid/merged_setting_error.yaml:8:22
  |
8 |         temperature: hot
  |                      ^^^

error: node `review`: `temperature` must be a number, not `hot`
 --> tests/fixtures/invalid/merged_setting_error.yaml:8:22
  |
8 |         temperature: hot
  |                      ^^^

error: tests/fixtures/invalid/merged_setting_error.yaml has 2 errors
"#,
    );
}

#[test]
fn merge_keys_share_settings_between_nodes() {
    let text = std::fs::read_to_string("tests/fixtures/invalid/merged_setting_error.yaml")
        .unwrap()
        .replace("temperature: hot", "temperature: 0.2");
    let illumo = crate::support::Illumo::new();
    let path = illumo.flow_file(&text);
    let out = illumo.args(["validate", &path]).run().success().stderr("");
    assert_eq!(
        out.stdout,
        format!("ok: `flow` in {path} (2 nodes, 1 edge)\n")
    );
}

#[test]
fn validate_checks_many_files_and_patterns_and_speaks_json() {
    let dir = TempDir::new();
    dir.write(
        "good.yaml",
        "flow:\n  name: good\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n",
    );
    dir.write(
        "spin.yaml",
        "flow:\n  name: spin\n  max_steps: 3\n  entry: a\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n    b: {type: Set, setting: {value: 2}}\n  edges:\n    - a >> b\n    - b >> a\n",
    );
    std::fs::create_dir_all(dir.path().join("more")).unwrap();
    dir.write("more/bad.yaml", "flow:\n  nodes:\n    a: {type: Sett}\n");
    dir.write("more/replies.yaml", "replies: {a: [x]}\n");
    let run = |args: &[&str]| {
        Illumo::new()
            .in_dir(dir.path())
            .args(["validate"])
            .args(args)
            .run()
    };

    let two = run(&["good.yaml", "spin.yaml"]).success();
    assert_eq!(
        two.stdout,
        "ok: `good` in good.yaml (1 node, 0 edges)\nok: `spin` in spin.yaml (2 nodes, 2 edges, 1 warning)\n"
    );
    assert!(
        two.stderr
            .ends_with("ok: 2 files checked, 0 errors, 1 warning\n"),
        "{}",
        two.stderr
    );

    let denied = run(&["good.yaml", "spin.yaml", "--deny-warnings"]).code(2);
    assert!(
        denied
            .stderr
            .ends_with("failed: 2 files checked, 0 errors, 1 warning (warnings denied)\n"),
        "{}",
        denied.stderr
    );

    let all = run(&["**/*.yaml"]).code(2);
    assert!(
        all.stderr
            .contains("skipped: more/replies.yaml is not a flow file (no `flow:` key)\n"),
        "{}",
        all.stderr
    );
    assert!(
        all.stderr
            .contains("error: unknown node type `Sett`\n --> more/bad.yaml:3:15\n"),
        "{}",
        all.stderr
    );
    assert!(
        all.stderr
            .ends_with("failed: 3 files checked, 1 error, 1 warning\n"),
        "{}",
        all.stderr
    );

    let json = run(&[
        "more/bad.yaml",
        "spin.yaml",
        "missing.yaml",
        "--format",
        "json",
    ])
    .code(2);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json.stderr, "");
    assert_eq!(
        (&value["ok"], &value["errors"], &value["warnings"]),
        (&false.into(), &2.into(), &1.into())
    );
    let d = &value["diagnostics"];
    assert_eq!(
        (
            &d[0]["file"],
            &d[0]["line"],
            &d[0]["column"],
            &d[0]["severity"],
            &d[0]["message"]
        ),
        (
            &"more/bad.yaml".into(),
            &3.into(),
            &15.into(),
            &"error".into(),
            &"unknown node type `Sett`".into()
        )
    );
    assert_eq!(d[0]["label"], "did you mean `Set`?");
    assert!(d[0]["hint"]
        .as_str()
        .unwrap()
        .starts_with("known types: Agent, "));
    assert_eq!(
        (&d[1]["file"], &d[1]["severity"], &d[1]["line"]),
        (&"spin.yaml".into(), &"warning".into(), &6.into())
    );
    assert_eq!(d[2]["file"], "missing.yaml");
    assert!(d[2]["message"]
        .as_str()
        .unwrap()
        .starts_with("cannot read flow file `missing.yaml`: "));
    assert_eq!(d[2]["line"], serde_json::Value::Null);

    let none = run(&["nothing/*.yaml"]).code(2);
    assert_eq!(none.stderr, "error: no file matches `nothing/*.yaml`\n");
}

#[test]
fn x_keys_beside_flow_hold_anchors_and_errors_in_them_point_at_their_line() {
    let dir = TempDir::new();
    dir.write("r.yaml", "replies: {a: [hello]}\n");
    dir.write(
        "flow.yaml",
        "x-llm: &llm\n  provider: scripted\n  responses: r.yaml\nflow:\n  name: a\n  nodes:\n    a:\n      type: Agent\n      setting: {<<: *llm, prompt: hi}\n      outputs: $ctx.said\n",
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-q",
            "--tracer",
            "none",
            "--print",
            "said",
        ])
        .run()
        .success();
    assert_eq!(out.stdout, "hello\n");
    dir.write(
        "bad.yaml",
        "x-llm: &llm\n  provider: scripted\n  temprature: 0\nflow:\n  nodes:\n    a: {type: Agent, setting: {<<: *llm, prompt: hi}}\nother: 1\n",
    );
    let bad = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "bad.yaml"])
        .run()
        .code(2);
    assert!(
        bad.stderr.contains("error: node `a`: `Agent` has no setting `temprature`; did you mean `temperature`?\n --> bad.yaml:3:3\n"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr
            .contains("error: unknown key `other` in the flow file\n --> bad.yaml:7:1\n"),
        "{}",
        bad.stderr
    );
}

/// A caret inside a value lands where the file has the text: after escapes (`\"`, `''`,
/// `\u00e9`), on a block's own line, across folded lines and a `\` line continuation.
#[test]
fn carets_follow_escapes_blocks_and_folded_lines() {
    validate(
        "tests/fixtures/invalid/carets_in_scalars.yaml",
        2,
        r#"error: node `a`: invalid template: `ctx.user.name` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`; did you mean `$ctx.user.name`?
 --> tests/fixtures/invalid/carets_in_scalars.yaml:8:35
  |
8 |         value: "say \"hi\" \u00e9 {{ ctx.user.name }}"
  |                                   ^^
  = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: node `b`: invalid template: `ctx.user.name` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`; did you mean `$ctx.user.name`?
  --> tests/fixtures/invalid/carets_in_scalars.yaml:12:23
   |
12 |         value: 'it''s {{ ctx.user.name }}'
   |                       ^^
   = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: node `c`: invalid template: `ctx.user.name` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`; did you mean `$ctx.user.name`?
  --> tests/fixtures/invalid/carets_in_scalars.yaml:18:17
   |
18 |           hello {{ ctx.user.name }}
   |                 ^^
   = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: node `d`: invalid template: `ctx.user.name` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`; did you mean `$ctx.user.name`?
  --> tests/fixtures/invalid/carets_in_scalars.yaml:23:16
   |
23 |           then {{ ctx.user.name }}
   |                ^^
   = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: node `e`: invalid template: `ctx.user.name` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`; did you mean `$ctx.user.name`?
  --> tests/fixtures/invalid/carets_in_scalars.yaml:28:19
   |
28 |           goes on {{ ctx.user.name }}"
   |                   ^^
   = help: templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`

error: invalid condition `ctx.x == 1 && ctx.y = 2`: token recognition error at: '= '
  --> tests/fixtures/invalid/carets_in_scalars.yaml:35:15
   |
35 |         ctx.y = 2
   |               ^

error: tests/fixtures/invalid/carets_in_scalars.yaml has 6 errors
"#,
    );
}
