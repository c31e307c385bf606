#!/usr/bin/env python3
"""Regenerate the illumo-flow compatibility corpus from the illumo-flow snapshot.

Run through ./record.sh (it bootstraps the Python 3.10 venvs and then execs this
file with the venv interpreter, which has PyYAML and illumo_flow installed).

What it does, in order:
  1. clones the snapshot (bare repo) into $SCRATCH/src and notes its commit;
  2. re-extracts every flow from the snapshot by file/line (markdown YAML blocks,
     YAML files, textwrap.dedent() YAML strings in tests, EXAMPLE_FLOWS dicts)
     and writes flows/<name>.yaml (a "# from FILE:LINES" header + the exact text);
     documented duplicates (README_ja.md etc.) are asserted byte-identical;
  3. copies the Python modules / workspace files the flows use from the snapshot
     into modules/ (hand-written modules for docs-only functions are left alone);
  4. writes contexts/<name>.json;
  5. runs each flow with illumo-flow's own CLI (`illumo run`) from a fresh copy of
     modules/ under $SCRATCH/work (cwd = that copy, PYTHONPATH = that copy) and
     writes expected/<run>.json (exit 0: the exact --output --pretty ctx file) or
     expected/<run>.error.json (exit != 0), plus expected/<run>.stdout.txt
     (ConsoleTracer output) and expected/_runs.json;
  6. regenerates MANIFEST.md.

Nothing outside tests/illumo_flow/ and $SCRATCH is written.
"""

from __future__ import annotations

import sys as _sys

_sys.dont_write_bytecode = True  # keep tests/illumo_flow free of __pycache__

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
SNAPSHOT = os.environ.get("ILLUMO_FLOW_SNAPSHOT", "/work/.mirror/kitfactory+illumo-flow/repo")
SCRATCH = Path(os.environ.get("ILLUMO_FLOW_SCRATCH", "/tmp/illumo_flow_record"))
VENV = Path(sys.prefix)  # record.sh execs this file with the venv's python
VENV_OPENAI = SCRATCH / "venv-openai"
SEED_SITE = "_record_site"

# --------------------------------------------------------------------------------------
# Corpus table.  kind:
#   md     -> lines [start, end] of `src` (the body of a ```yaml fence), 1-based inclusive
#   file   -> the whole file `src`
#   dedent -> the string passed to textwrap.dedent() whose call starts on line `call_line`
#   dict   -> {"flow": EXAMPLE_FLOWS[id]["dsl"]} (exactly what examples/__main__.py and
#             tests/test_flow_examples.py::build_flow hand to Flow.from_config), dumped to YAML
# --------------------------------------------------------------------------------------

README_CTX_NOTE = "README.md:289-291 runs `flow = Flow.from_config(\"./flow.yaml\"); context = {}; flow.run(context)`"

FLOWS: List[Dict[str, Any]] = [
    dict(name="readme_etl", kind="md", src="README.md", start=144, end=172,
         same=[("README_ja.md", 138, 166)],
         context={}, context_src=README_CTX_NOTE,
         doc_cmd="illumo run flow.yaml --context @context.json  (README.md:32)",
         modules=["examples.ops (copied)"]),
    dict(name="concept_fanout_join", kind="md", src="docs/concept.md", start=123, end=155,
         same=[("docs/concept_ja.md", 123, 155)],
         context={}, context_src="no CLI/context documented for the YAML; docs/concept.md:105-106 uses ctx = {} (user_input=42 is Python-only)",
         doc_cmd="none documented (CLI equivalent of Flow.from_config(path).run({}))",
         modules=["start_func / node_a / node_b / join_func: bare names, not importable paths; no module can satisfy them"]),
    dict(name="flow_guide_etl", kind="md", src="docs/flow.md", start=138, end=166,
         same=[("docs/flow_ja.md", 113, 141)],
         context={}, context_src="docs/flow.md:171-177 runs Flow.from_config(\"flow.yaml\").run({})",
         doc_cmd="none documented (CLI equivalent of docs/flow.md:174-176)",
         modules=["examples.ops (copied)"]),
    dict(name="update_req_node_policy", kind="md", src="docs/update_requirement.md", start=218, end=238,
         context={}, context_src="none documented; {} used",
         doc_cmd="none documented",
         modules=["examples.ops (copied; it has no load_ticket/escalate)"]),
    dict(name="update_req_router_scenario", kind="md", src="docs/update_requirement.md", start=445, end=487,
         context={"history": {"intake": ["User: Draft request", "Agent: Understood."]}},
         context_src="docs/update_requirement.md:553-557 (context of the dict twin of this flow, :493-548)",
         doc_cmd="none documented (Python twin at docs/update_requirement.md:550-559)",
         modules=["pkg.nodes.final_gate (written from docs/update_requirement.md:566-573; referenced only via the ignored key `handler:`)"]),
    dict(name="update_req_schema", kind="md", src="docs/update_requirement.md", start=677, end=733,
         context={"payload": {}}, context_src="docs/update_requirement.md:748",
         doc_cmd="illumo run flow.yaml --context '{\"payload\": {}}' --tracer otel --service-name demo-service --policy '{\"fail_fast\": false, \"retry\": {\"max_attempts\": 2}}'  (docs/update_requirement.md:748)",
         extra_args=["--tracer", "otel", "--service-name", "demo-service",
                     "--policy", "{\"fail_fast\": false, \"retry\": {\"max_attempts\": 2}}"],
         modules=["pkg.nodes.fetch/enrich/aggregate: never described in the docs, not provided"]),
    dict(name="tut02_agent_greet", kind="md", src="docs/tutorials/02_agent_basics.md", start=43, end=54,
         context={"user": {"name": "Riko"}}, context_src="docs/tutorials/02_agent_basics.md:57",
         doc_cmd="illumo run agent_greet.yaml --context '{\"user\": {\"name\": \"Riko\"}}'", modules=[]),
    dict(name="tut02_agent_greet_ja", kind="md", src="docs/tutorials/02_agent_basics_ja.md", start=43, end=54,
         context={"user": {"name": "葵"}}, context_src="docs/tutorials/02_agent_basics_ja.md:57",
         doc_cmd="illumo run agent_greet.yaml --context '{\"user\": {\"name\": \"葵\"}}'", modules=[]),
    dict(name="tut03_flow_basics", kind="md", src="docs/tutorials/03_flow_basics.md", start=53, end=70,
         context={"user": {"name": "Kai"}}, context_src="docs/tutorials/03_flow_basics.md:73",
         doc_cmd="illumo run flow.yaml --context '{\"user\": {\"name\": \"Kai\"}}'",
         modules=["path.to.module.post_process (written from docs/tutorials/03_flow_basics.md:28-29)"]),
    dict(name="tut03_flow_basics_ja", kind="md", src="docs/tutorials/03_flow_basics_ja.md", start=53, end=70,
         context={"user": {"name": "紗希"}}, context_src="docs/tutorials/03_flow_basics_ja.md:73",
         doc_cmd="illumo run flow.yaml --context '{\"user\": {\"name\": \"紗希\"}}'",
         modules=["path.to.module.post_process (written from docs/tutorials/03_flow_basics_ja.md:28-29)"]),
    dict(name="tut04_router_decision", kind="md", src="docs/tutorials/04_router_agent.md", start=42, end=56,
         context={"review": "Tests are green and stakeholders approved."}, context_src="docs/tutorials/04_router_agent.md:59",
         doc_cmd="illumo run router_decision.yaml --context '{\"review\": \"Tests are green and stakeholders approved.\"}'", modules=[]),
    dict(name="tut04_router_decision_ja", kind="md", src="docs/tutorials/04_router_agent_ja.md", start=42, end=56,
         context={"review": "Tests are green and stakeholders approved."}, context_src="docs/tutorials/04_router_agent_ja.md:59",
         doc_cmd="illumo run router_decision.yaml --context '{\"review\": \"Tests are green and stakeholders approved.\"}'", modules=[]),
    dict(name="tut05_evaluate_greeting", kind="md", src="docs/tutorials/05_evaluation_agent.md", start=44, end=55,
         context={"messages": {"greeting": "Hello world"}}, context_src="docs/tutorials/05_evaluation_agent.md:58",
         doc_cmd="illumo run evaluate_greeting.yaml --context '{\"messages\": {\"greeting\": \"Hello world\"}}'", modules=[]),
    dict(name="tut05_evaluate_greeting_ja", kind="md", src="docs/tutorials/05_evaluation_agent_ja.md", start=44, end=55,
         context={"messages": {"greeting": "Hello world"}}, context_src="docs/tutorials/05_evaluation_agent_ja.md:58",
         doc_cmd="illumo run evaluate_greeting.yaml --context '{\"messages\": {\"greeting\": \"Hello world\"}}'", modules=[]),
    dict(name="tut06_flow_launch", kind="md", src="docs/tutorials/06_multi_agent_app.md", start=74, end=104,
         context={"feature": {"name": "Smart Summary"}}, context_src="docs/tutorials/06_multi_agent_app.md:107",
         doc_cmd="illumo run flow_launch.yaml --context '{\"feature\": {\"name\": \"Smart Summary\"}}'", modules=[]),
    dict(name="tut06_flow_launch_ja", kind="md", src="docs/tutorials/06_multi_agent_app_ja.md", start=74, end=104,
         context={"feature": {"name": "Smart Summary"}}, context_src="docs/tutorials/06_multi_agent_app_ja.md:107",
         doc_cmd="illumo run flow_launch.yaml --context '{\"feature\": {\"name\": \"Smart Summary\"}}'", modules=[]),
    dict(name="tut08_node_override", kind="md", src="docs/tutorials/08_policy_mastery.md", start=32, end=39,
         same=[("docs/tutorials/08_policy_mastery_ja.md", 32, 39)],
         context={}, context_src="none documented (fragment: `nodes:` only); {} used",
         doc_cmd="none documented (fragment)", modules=[]),
    dict(name="tut08_policy_demo", kind="md", src="docs/tutorials/08_policy_mastery.md", start=44, end=69,
         context={"input": "payload"}, context_src="docs/tutorials/08_policy_mastery.md:72",
         doc_cmd="illumo run policy_demo.yaml --context '{\"input\": \"payload\"}'", modules=[]),
    dict(name="tut08_policy_demo_ja", kind="md", src="docs/tutorials/08_policy_mastery_ja.md", start=44, end=69,
         context={"input": "payload"}, context_src="docs/tutorials/08_policy_mastery_ja.md:72",
         doc_cmd="illumo run policy_demo.yaml --context '{\"input\": \"payload\"}'", modules=[]),
    dict(name="chatbot_flow", kind="file", src="examples/multi_agent/chat_bot/chatbot_flow.yaml",
         context={"chat": {"history": []}}, context_src="README.md:118 (also README.md:137, README_ja.md:120)",
         doc_cmd="illumo run examples/multi_agent/chat_bot/chatbot_flow.yaml --context '{\"chat\": {\"history\": []}}'",
         variants=[dict(suffix="alt",
                        context={"chat": {"history": [{"role": "user", "message": "返品したいのですが"}]},
                                 "request": {"profile": {"tier": "standard"}}},
                        context_src="examples/multi_agent/chat_bot/README.md:18-28")],
         modules=["examples.multi_agent.chat_bot.handoff (copied)"]),
    dict(name="coding_assistant", kind="file", src="examples/multi_agent/coding_assistant/coding_assistant.yaml",
         context="CODING_ASSISTANT", context_src="examples/multi_agent/coding_assistant/README.md:22-32 (diff.proposed = example_diff.patch text, as the README's python one-liner produces)",
         doc_cmd="illumo run examples/multi_agent/coding_assistant/coding_assistant.yaml --context '{\"request\": {...}, \"diff\": {\"proposed\": \"<example_diff.patch>\"}}'  (examples/multi_agent/coding_assistant/README.md:22)",
         variants=[dict(suffix="write",
                        context={"request": {"description": "Fix add() implementation",
                                             "target_root": "examples/multi_agent/coding_assistant",
                                             "tests": "pytest -q", "write": True},
                                 "diff": {"proposed": "--- a/sample_app/__init__.py\n+++ b/sample_app/__init__.py\n@@ -5 +5 @@\n-    return a - b  # intentional bug for the assistant to fix\n+    return a + b\n"}},
                        context_src="not documented: the README's request with `write: true` (PatchNode writes the files) and a diff that matches sample_app/__init__.py (the example's own has two blank lines where the file has one)")],
         modules=["workspace examples/multi_agent/coding_assistant/ (copied: sample_app, tests, patch, README, yaml)", "pytest on PATH (TestExecutorNode runs `pytest -q`)"]),
    dict(name="sample_linear_etl", kind="dict", src="examples/sample_flows.py", example_id="linear_etl",
         context={}, context_src="examples/__main__.py:33-34 and tests/test_flow_examples.py:173-174 run with context {}",
         doc_cmd="python -m examples linear_etl  (examples/__main__.py); CLI equivalent used", modules=["examples.ops (copied)"]),
    dict(name="sample_confidence_router", kind="dict", src="examples/sample_flows.py", example_id="confidence_router",
         context={}, context_src="examples/__main__.py:33-34 (context {})", seed=0,
         doc_cmd="python -m examples confidence_router; CLI equivalent used",
         modules=["examples.ops (copied) -- classify() uses random(); recorded with random.seed(0) via sitecustomize"]),
    dict(name="sample_parallel_enrichment", kind="dict", src="examples/sample_flows.py", example_id="parallel_enrichment",
         context={}, context_src="examples/__main__.py:33-34 (context {})",
         doc_cmd="python -m examples parallel_enrichment; CLI equivalent used", modules=["examples.ops (copied)"]),
    dict(name="sample_node_managed_timeout", kind="dict", src="examples/sample_flows.py", example_id="node_managed_timeout",
         context={}, context_src="examples/__main__.py:33-34 (context {})",
         doc_cmd="python -m examples node_managed_timeout; CLI equivalent used", modules=["examples.ops (copied)"]),
    dict(name="sample_early_stop_watchdog", kind="dict", src="examples/sample_flows.py", example_id="early_stop_watchdog",
         context={}, context_src="examples/__main__.py:33-34 (context {})",
         doc_cmd="python -m examples early_stop_watchdog; CLI equivalent used", modules=["examples.ops (copied)"]),
    dict(name="test_yaml_config_etl", kind="dedent", src="tests/test_flow_examples.py", call_line=278,
         context={}, context_src="tests/test_flow_examples.py:316-317 (ctx = {})",
         doc_cmd="none (pytest tests/test_flow_examples.py::test_flow_from_yaml_config); CLI equivalent used",
         modules=["examples.ops (copied)"]),
    dict(name="test_cli_happy_path", kind="dedent", src="tests/test_flow_examples.py", call_line=821,
         context={}, context_src="tests/test_flow_examples.py:841-850 (--context '{}')",
         doc_cmd="illumo run flow.yaml --context '{}' --output ctx.json --pretty  (tests/test_flow_examples.py:841-853)",
         modules=["tests.test_flow_examples (copied verbatim; imports pytest, yaml, illumo_flow, examples)"]),
    dict(name="test_cli_failure", kind="dedent", src="tests/test_flow_examples.py", call_line=865,
         context={}, context_src="tests/test_flow_examples.py:883-892 (--context '{}')",
         doc_cmd="illumo run fail_flow.yaml --context '{}' --log-dir logs  (tests/test_flow_examples.py:883-894)",
         modules=["tests.test_flow_examples (copied verbatim; imports pytest, yaml, illumo_flow, examples)"]),
]

# Snapshot files copied into modules/ (relative to the illumo-flow repo root).
COPY_FILES = [
    "examples/__init__.py",
    "examples/ops.py",
    "examples/sample_flows.py",
    "examples/multi_agent/chat_bot/handoff.py",
    "examples/multi_agent/chat_bot/data/faqs.json",
    "examples/multi_agent/coding_assistant/README.md",
    "examples/multi_agent/coding_assistant/coding_assistant.yaml",
    "examples/multi_agent/coding_assistant/example_diff.patch",
    "examples/multi_agent/coding_assistant/sample_app/__init__.py",
    "examples/multi_agent/coding_assistant/sample_app/tests/test_sample_app.py",
    "tests/test_flow_examples.py",
]

TRACE_RE = re.compile(r"\b[0-9a-f]{32}\b")
TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?")


def sh(cmd: List[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def read_lines(root: Path, rel: str, start: int, end: int) -> str:
    lines = (root / rel).read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(lines[start - 1:end])


def dedent_string(root: Path, rel: str, call_line: int) -> str:
    tree = ast.parse((root / rel).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "dedent" and node.lineno == call_line):
            arg = node.args[0]
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            return textwrap.dedent(arg.value)
    raise SystemExit(f"no textwrap.dedent() call on {rel}:{call_line}")


def sample_flow(root: Path, example_id: str) -> tuple[str, int]:
    import yaml

    sys.path.insert(0, str(root))
    try:
        from examples.sample_flows import EXAMPLE_FLOWS  # type: ignore
    finally:
        sys.path.pop(0)
    example = next(ex for ex in EXAMPLE_FLOWS if ex["id"] == example_id)
    config = {"flow": example["dsl"]}
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    assert yaml.safe_load(text) == config
    line = next(i for i, l in enumerate((root / "examples/sample_flows.py").read_text().splitlines(), 1)
                if f'"id": "{example_id}"' in l)
    return text, line


def extract(root: Path, spec: Dict[str, Any]) -> tuple[str, str]:
    kind, src = spec["kind"], spec["src"]
    if kind == "md":
        text = read_lines(root, src, spec["start"], spec["end"])
        where = f"{src}:{spec['start']}-{spec['end']}"
        for other, s, e in spec.get("same", []):
            assert read_lines(root, other, s, e) == text, f"{other}:{s}-{e} differs from {where}"
        header = f"# from {where}\n"
        for other, s, e in spec.get("same", []):
            header += f"# byte-identical copy also at {other}:{s}-{e}\n"
    elif kind == "file":
        text = (root / src).read_text(encoding="utf-8")
        where = f"{src}:1-{len(text.splitlines())}"
        header = f"# from {where} (whole file)\n"
    elif kind == "dedent":
        text = dedent_string(root, src, spec["call_line"])
        where = f"{src}:{spec['call_line']}"
        header = (f"# from {where} (string passed to textwrap.dedent() at that line; the test writes "
                  f"exactly this text to a .yaml file)\n")
    elif kind == "dict":
        text, line = sample_flow(root, spec["example_id"])
        where = f"{src}:{line}"
        header = (f"# from {where} (Python dict EXAMPLE_FLOWS[id={spec['example_id']!r}]['dsl'], wrapped as\n"
                  f"# {{'flow': dsl}} exactly like examples/__main__.py:25; serialized to YAML by record.py,\n"
                  f"# round-trip checked: yaml.safe_load(this) == the dict)\n")
    else:
        raise ValueError(kind)
    spec["where"] = where
    return header, text


def coding_assistant_context(root: Path) -> Dict[str, Any]:
    patch = (root / "examples/multi_agent/coding_assistant/example_diff.patch").read_text(encoding="utf-8")
    # README: "$(cat example_diff.patch | python -c "import sys, json; print(json.dumps(sys.stdin.read()))")"
    # -> a JSON string literal of the whole file, placed inside "..." of the --context JSON.
    return {
        "request": {
            "description": "Fix add() implementation",
            "target_root": "examples/multi_agent/coding_assistant",
            "tests": "pytest -q",
        },
        "diff": {"proposed": patch},
    }


def normalize(text: str) -> str:
    return TS_RE.sub("<TIMESTAMP>", TRACE_RE.sub("<TRACE_ID>", text))


STUB_DRIVER = '''"""illumo-flow's own CLI main(), with FlowRuntime.llm_factory set to a deterministic echo stub.

NOT an illumo-flow feature/mode: illumo-flow has no offline LLM mode.  This only uses the
public extension point FlowRuntime.configure(llm_factory=...) (runtime.py:44-78), which
`illumo run` preserves (cli/__init__.py:446-466), to show the ctx shapes Agent nodes write.
The stub answers responses.create(model=..., input=..., instructions=...) with
output_text = "[stub <model>] <input>" (or "" when no input was sent).
"""
import sys
from types import SimpleNamespace

from illumo_flow import FlowRuntime
from illumo_flow.cli import main


class _Responses:
    def create(self, **kw):
        text = kw.get("input")
        return SimpleNamespace(output_text=f"[stub {kw['model']}] {text}" if text else "")


def factory(*, provider=None, model, base_url=None, **kw):
    return SimpleNamespace(responses=_Responses())


FlowRuntime.configure(llm_factory=factory)
sys.exit(main(sys.argv[1:]))
'''


def run_cli(venv: Path, name: str, ctx_name: str, spec: Dict[str, Any], out: Path,
            stub: bool = False) -> Dict[str, Any]:
    work = SCRATCH / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(HERE / "modules", work / "modules")
    shutil.copytree(HERE / "flows", work / "flows")
    shutil.copytree(HERE / "contexts", work / "contexts")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    pythonpath = [str(work / "modules")]
    if spec.get("seed") is not None:
        site = work / SEED_SITE
        site.mkdir()
        (site / "sitecustomize.py").write_text(f"import random\nrandom.seed({spec['seed']})\n")
        pythonpath.insert(0, str(site))

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI", "ANTHROPIC", "PYTHON", "VIRTUAL_ENV", "FLOW_DEBUG"))}
    env.update({
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "TZ": "UTC",
        "NO_COLOR": "1",
    })
    args = ["run", f"../flows/{name}.yaml", "--context", f"@../contexts/{ctx_name}.json",
            *spec.get("extra_args", [])]
    record_args = ["--output", str(out / "ctx.json"), "--pretty",
                   "--report-path", str(out / "report.json"), "--log-dir", str(out / "logs")]
    exe = [str(venv / "bin" / "illumo")]
    if stub:
        (work / "stub_llm_cli.py").write_text(STUB_DRIVER, encoding="utf-8")
        exe = [str(venv / "bin" / "python"), str(work / "stub_llm_cli.py")]
    proc = subprocess.run([*exe, *args, *record_args], cwd=work / "modules",
                          env=env, capture_output=True, text=True, timeout=600)
    result: Dict[str, Any] = {
        "exit_code": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "command": "cd modules && illumo " + " ".join(_q(a) for a in args + record_args).replace(str(out), "$OUT"),
    }
    if (out / "ctx.json").exists():
        result["ctx_bytes"] = (out / "ctx.json").read_bytes()
    if (out / "report.json").exists():
        result["report"] = json.loads(normalize((out / "report.json").read_text(encoding="utf-8")))
    log = out / "logs" / "runtime_execution.log"
    if log.exists():
        lines = [l for l in log.read_text(encoding="utf-8").splitlines() if l.strip()]
        result["runtime_log"] = [json.loads(normalize(l)) for l in lines]
    return result


def _q(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@./:=$-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def first_error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("Failed to load flow:"):
            return line
        if line.strip().startswith("reason:"):
            return line.strip()
    return stderr.strip().splitlines()[0] if stderr.strip() else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openai-probe", action="store_true",
                        help="also run agent flows in a venv that has the openai SDK (no API key) and record the error")
    parser.add_argument("--stub-llm", action="store_true",
                        help="also run agent flows with an injected echo llm_factory -> expected/stub_llm/ (shape reference only)")
    args = parser.parse_args()

    import yaml  # noqa: F401  (fail early when not run from the venv)

    version = metadata.version("illumo-flow")
    src = SCRATCH / "src"
    if src.exists():
        shutil.rmtree(src)
    sh(["git", "clone", "--quiet", SNAPSHOT, str(src)])
    commit = sh(["git", "-C", str(src), "rev-parse", "HEAD"]).stdout.strip()

    # 2. flows
    flows_dir = HERE / "flows"
    flows_dir.mkdir(exist_ok=True)
    for spec in FLOWS:
        header, text = extract(src, spec)
        (flows_dir / f"{spec['name']}.yaml").write_text(header + text, encoding="utf-8")

    # 3. modules copied from the snapshot
    for rel in COPY_FILES:
        dst = HERE / "modules" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst)

    # 4. contexts
    ctx_dir = HERE / "contexts"
    ctx_dir.mkdir(exist_ok=True)
    runs: List[tuple[str, str, Dict[str, Any], Dict[str, Any]]] = []
    for spec in FLOWS:
        ctx = coding_assistant_context(src) if spec["context"] == "CODING_ASSISTANT" else spec["context"]
        (ctx_dir / f"{spec['name']}.json").write_text(json.dumps(ctx, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        runs.append((spec["name"], spec["name"], spec, dict(context_src=spec["context_src"])))
        for var in spec.get("variants", []):
            vname = f"{spec['name']}.{var['suffix']}"
            (ctx_dir / f"{vname}.json").write_text(json.dumps(var["context"], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            runs.append((vname, vname, spec, dict(context_src=var["context_src"])))

    # 5. run
    exp_dir = HERE / "expected"
    if exp_dir.exists():
        shutil.rmtree(exp_dir)
    exp_dir.mkdir()
    summary: List[Dict[str, Any]] = []
    for run_name, ctx_name, spec, extra in runs:
        res = run_cli(VENV, spec["name"], ctx_name, spec, SCRATCH / "out" / run_name)
        entry: Dict[str, Any] = {
            "run": run_name, "flow": spec["name"], "source": spec["where"], "context": f"contexts/{ctx_name}.json",
            "context_source": extra["context_src"], "documented_command": spec["doc_cmd"],
            "command": res["command"], "exit_code": res["exit_code"],
            "illumo_flow_version": version, "snapshot_commit": commit, "seed": spec.get("seed"),
        }
        if res["stdout"]:
            (exp_dir / f"{run_name}.stdout.txt").write_text(res["stdout"], encoding="utf-8")
        if res["exit_code"] == 0:
            (exp_dir / f"{run_name}.json").write_bytes(res["ctx_bytes"])
            entry["expected"] = f"expected/{run_name}.json"
        else:
            err: Dict[str, Any] = {
                "exit_code": res["exit_code"],
                "stage": "load" if res["stderr"].startswith("Failed to load flow:") else "run",
                "error": first_error_line(res["stderr"]),
                "stderr": normalize(res["stderr"]),
                "report": res.get("report"),
                "runtime_log": res.get("runtime_log"),
            }
            if args.openai_probe and "OpenAI SDK is required" in res["stderr"]:
                probe = run_cli(VENV_OPENAI, spec["name"], ctx_name, spec, SCRATCH / "out-openai" / run_name)
                err["with_openai_sdk_no_api_key"] = {
                    "exit_code": probe["exit_code"],
                    "error": first_error_line(probe["stderr"]),
                    "stderr": normalize(probe["stderr"]),
                }
            (exp_dir / f"{run_name}.error.json").write_text(json.dumps(err, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            if args.stub_llm and "OpenAI SDK is required" in res["stderr"]:
                stub_dir = exp_dir / "stub_llm"
                stub_dir.mkdir(exist_ok=True)
                sres = run_cli(VENV, spec["name"], ctx_name, spec, SCRATCH / "out-stub" / run_name, stub=True)
                if sres["stdout"]:
                    (stub_dir / f"{run_name}.stdout.txt").write_text(sres["stdout"], encoding="utf-8")
                if sres["exit_code"] == 0:
                    (stub_dir / f"{run_name}.json").write_bytes(sres["ctx_bytes"])
                    entry["stub_llm"] = f"expected/stub_llm/{run_name}.json (exit 0)"
                else:
                    serr = {"exit_code": sres["exit_code"], "error": first_error_line(sres["stderr"]),
                            "stderr": normalize(sres["stderr"]), "report": sres.get("report")}
                    (stub_dir / f"{run_name}.error.json").write_text(json.dumps(serr, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                    entry["stub_llm"] = f"expected/stub_llm/{run_name}.error.json (exit {sres['exit_code']}: {serr['error']})"
            entry["expected"] = f"expected/{run_name}.error.json"
            entry["stage"] = err["stage"]
            entry["error"] = err["error"]
        entry["modules"] = spec.get("modules", [])
        summary.append(entry)
        print(f"{run_name:34s} exit={res['exit_code']} {entry.get('error', '')}", flush=True)

    (exp_dir / "_runs.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_manifest(summary, version, commit)
    return 0


def write_manifest(summary: List[Dict[str, Any]], version: str, commit: str) -> None:
    sys.path.insert(0, str(HERE))
    try:
        import importlib

        notes = importlib.import_module("manifest_notes")
        notes = importlib.reload(notes)
        note_map, preamble = notes.NOTES, notes.PREAMBLE
    except Exception:
        note_map, preamble = {}, ""
    finally:
        sys.path.pop(0)
    rows = ["| # | short name | source file:line | documented command / context source | command used (cwd = copy of modules/) | illumo-flow | ran OK? | expected file | Python modules needed | notes |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for i, e in enumerate(summary, 1):
        ok = "yes (exit 0)" if e["exit_code"] == 0 else f"no, exit {e['exit_code']} at {e['stage']}: `{e['error']}`"
        mods = "<br>".join(e["modules"]) or "none"
        cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        rows.append("| " + " | ".join([
            str(i), f"`{e['run']}`", cell(e["source"]),
            cell(e["documented_command"]) + "<br>ctx: " + cell(e["context_source"]),
            f"`{cell(e['command'])}`", f"{e['illumo_flow_version']} ({e['snapshot_commit'][:7]})",
            cell(ok), f"`{e['expected']}`", cell(mods), cell(note_map.get(e["run"], "")),
        ]) + " |")
    (HERE / "MANIFEST.md").write_text(preamble.format(version=version, commit=commit, count=len({e['flow'] for e in summary}), runs=len(summary))
                                      + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
