#!/usr/bin/env bash
# Opt-in check: illumo's agents against a real OpenAI-compatible server, llama.cpp's
# (through llama-cpp-python), with a tiny random-weight model and no model download.
# Not part of CI: the first run builds llama.cpp from source (~10 min on 2 cores).
#
#   bash scripts/llama-check/run.sh          # from the repo root, after `cargo build`
#
# Everything goes under target/llama-check/ (venv, model, server log, runs, trace.db).
# Environment: ILLUMO (binary, default target/debug/illumo),
# LLAMA_CPP_PYTHON_VERSION (default 0.3.36), CMAKE_ARGS (default: a CPU-only build).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
HERE=scripts/llama-check
WORK=target/llama-check
VENV=$WORK/venv
PY=$VENV/bin/python
ILLUMO=${ILLUMO:-target/debug/illumo}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
VOCAB_NAME=ggml-vocab-llama-spm.gguf
MODEL=$WORK/tiny-llama.gguf
START=$SECONDS

step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - START)); }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

mkdir -p "$WORK"
for tool in python3 sqlite3 curl; do
    command -v "$tool" >/dev/null || die "needs \`$tool\` on PATH"
done

# --- 1. Python venv with llama-cpp-python (builds llama.cpp), gguf, numpy -----------
step "venv and llama-cpp-python $VERSION (the first time builds llama.cpp: ~10 min)"
[ -x "$PY" ] || python3 -m venv "$VENV"
export CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF"}
"$PY" -m pip install --disable-pip-version-check -q \
    "llama-cpp-python[server]==$VERSION" gguf numpy

# --- 2. The tokenizer: a vocab-only GGUF from llama.cpp's source ---------------------
step "tokenizer from the llama-cpp-python $VERSION source package"
VOCAB=$WORK/$VOCAB_NAME
if [ ! -s "$VOCAB" ]; then
    SDIST=$WORK/sdist
    ls "$SDIST"/llama_cpp_python-"$VERSION".tar.gz >/dev/null 2>&1 ||
        "$PY" -m pip download --disable-pip-version-check -q --no-deps \
            --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$SDIST"
    "$PY" - "$SDIST/llama_cpp_python-$VERSION.tar.gz" "$VOCAB_NAME" "$VOCAB" <<'EOF'
import sys, tarfile
src, name, dest = sys.argv[1:]
with tarfile.open(src) as tar:
    member = next(m for m in tar.getmembers()
                  if m.name.endswith("/vendor/llama.cpp/models/" + name))
    with tar.extractfile(member) as f, open(dest, "wb") as out:
        out.write(f.read())
print(f"{dest} <- {src}:{member.name}")
EOF
fi

# --- 3. A tiny model with random weights (fixed seed) -------------------------------
step "tiny random-weight model"
"$PY" "$HERE/make_model.py" "$VOCAB" "$MODEL"
"$PY" "$HERE/make_model.py" "$VOCAB" "$MODEL.again" >/dev/null
cmp -s "$MODEL" "$MODEL.again" || die "make_model.py wrote two different files"
rm -f "$MODEL.again"
echo "sha256 $(sha256sum "$MODEL" | cut -d' ' -f1)  $MODEL (same bytes on a second write)"

# --- 4. The server (always stopped on exit) ----------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
step "llama_cpp.server on $BASE (log: $WORK/server.log)"
"$PY" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$PORT" --n_ctx 256 \
    >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do
    curl -sf "$BASE/v1/models" -o "$WORK/models.json" && break
    kill -0 "${PIDS[0]}" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; die "the server exited"; }
    sleep 1
done
[ -s "$WORK/models.json" ] || { tail -20 "$WORK/server.log" >&2; die "no answer from $BASE/v1/models in 120 s"; }
MODEL_ID=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"][0]["id"])' "$WORK/models.json")
echo "GET /v1/models: $MODEL_ID"

# The RouterAgent asks for OpenAI's `json_schema` response format. llama-cpp-python's
# server (0.3.x) answers that with 500 ("Input should be 'text' or 'json_object'"); it
# takes `{"type": "json_object", "schema": ...}` instead. illumo steps down to that form by
# itself when a server refuses json_schema (an `agent.format_fallback` event); probe here
# only to know which path the checks below should see.
PROBE_STATUS=$(curl -s -o "$WORK/probe.json" -w '%{http_code}' "$BASE/v1/chat/completions" \
    -H 'Content-Type: application/json' \
    -d "{\"model\": \"$MODEL_ID\", \"max_tokens\": 8, \"temperature\": 0,
         \"messages\": [{\"role\": \"user\", \"content\": \"pick\"}],
         \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"reply\",
           \"schema\": {\"type\": \"object\", \"properties\": {\"choice\": {\"enum\": [\"a\", \"b\"]}}, \"required\": [\"choice\"]}}}}")
ROUTER_BASE=$BASE
if [ "$PROBE_STATUS" = 200 ]; then
    echo "the server takes response_format json_schema"
    REFUSES=0
else
    echo "NOTE: the server answers response_format json_schema with $PROBE_STATUS:"
    echo "  $(head -c 200 "$WORK/probe.json")"
    echo "illumo should fall back to json_object + schema by itself"
    REFUSES=1
fi

# --- 5. The flow, run twice, and once streamed -------------------------------------
render() {  # render STREAM OUT
    sed -e "s#__ROUTER_BASE_URL__#$ROUTER_BASE#g" -e "s#__BASE_URL__#$BASE#g" \
        -e "s#__MODEL__#$MODEL_ID#g" -e "s#__STREAM__#$1#g" "$HERE/flow.yaml" >"$2"
}
render false "$WORK/flow.yaml"
render true "$WORK/flow-stream.yaml"
for _ in $(seq 60); do [ -x "$ILLUMO" ] && break; sleep 2; done  # it may be mid-rebuild
[ -x "$ILLUMO" ] || die "no $ILLUMO (cargo build first)"
rm -f "$WORK"/trace.db "$WORK"/trace.db-wal "$WORK"/trace.db-shm "$WORK"/run[12].* "$WORK"/stream.*

declare -A RC
run() {  # run NAME FLOW ARGS...
    local name=$1 flow=$2
    shift 2
    step "illumo run $flow ($name)"
    if "$ILLUMO" run "$flow" -c @"$HERE/context.json" -q -o "$WORK/$name.json" "$@" 2>"$WORK/$name.err"; then
        RC[$name]=0
    else
        RC[$name]=$?
    fi
    echo "exit ${RC[$name]}; ctx: $WORK/$name.json"
    [ -s "$WORK/$name.err" ] && sed 's/^/  stderr: /' "$WORK/$name.err" || true
}
TRACE=(--tracer sqlite --tracer-arg "db_path=$WORK/trace.db")
run run1 "$WORK/flow.yaml" "${TRACE[@]}"
run run2 "$WORK/flow.yaml" "${TRACE[@]}"
run stream "$WORK/flow-stream.yaml" --tracer none

# --- 6. Checks ----------------------------------------------------------------------
step "checks"
get() {  # get NAME DOTTED.PATH -> the value as JSON (null when absent)
    "$PY" - "$WORK/$1.json" "$2" <<'EOF'
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for k in sys.argv[2].split("."):
        v = v.get(k) if isinstance(v, dict) else None
except (OSError, ValueError):
    v = None
print(json.dumps(v))
EOF
}
PASSED=0
FAILED=0
check() {  # check DESCRIPTION CONDITION...
    local what=$1
    shift
    if "$@"; then
        PASSED=$((PASSED + 1)); echo "PASS  $what"
    else
        FAILED=$((FAILED + 1)); echo "FAIL  $what"
    fi
}
positive() { "$PY" -c 'import sys; v = sys.argv[1]; sys.exit(0 if v.isdigit() and int(v) > 0 else 1)' "$1"; }
nonempty_string() { "$PY" -c 'import json, sys; v = json.loads(sys.argv[1]); sys.exit(0 if isinstance(v, str) and v.strip() else 1)' "$1"; }
is_number() { "$PY" -c 'import json, sys; v = json.loads(sys.argv[1]); sys.exit(0 if isinstance(v, (int, float)) and not isinstance(v, bool) else 1)' "$1"; }

for name in run1 run2 stream; do
    check "$name exits 0 (got ${RC[$name]})" test "${RC[$name]}" = 0
done
T1=$(get run1 routing.triage.target)
T2=$(get run2 routing.triage.target)
check "run1 routes to one of the choices: $T1" grep -qxE '"(handle_billing|file_bug|answer_question)"' <<<"$T1"
check "run2 routes to the same target at temperature 0: $T2" test "$T1" = "$T2" -a "$T1" != null
C1=$(get run1 routing.triage.confidence)
check "the router's reply is the JSON object (confidence $C1, so the grammar held)" is_number "$C1"
if [ "$REFUSES" = 1 ]; then
    N=$(sqlite3 "$WORK/trace.db" "SELECT count(*) FROM events WHERE name = 'agent.format_fallback' AND json_extract(attributes, '\$.now') = 'json_object'")
    check "illumo fell back from json_schema to json_object + schema on the router calls ($N)" test "$N" -ge 2
fi
for name in run1 run2; do
    for node in triage reply; do
        IN=$(get $name usage.$node.input_tokens)
        OUT=$(get $name usage.$node.output_tokens)
        check "$name $node metadata: input_tokens $IN > 0, output_tokens $OUT > 0" \
            eval 'positive "$IN" && positive "$OUT"'
    done
done
SPANS=$(sqlite3 "$WORK/trace.db" "SELECT name || '=' || json_extract(attributes, '\$.gen_ai.usage.input_tokens') FROM spans
    WHERE json_extract(attributes, '\$.node.type') IN ('RouterAgent', 'Agent')
      AND json_extract(attributes, '\$.gen_ai.usage.input_tokens') > 0 ORDER BY start_time" 2>&1 | tr '\n' ' ' || true)
NSPANS=$(wc -w <<<"$SPANS")
check "trace.db: 4 agent spans with gen_ai.usage.input_tokens > 0: $SPANS" test "$NSPANS" = 4
R=$(get run1 reply)
RS=$(get stream reply)
check "run1 reply is non-empty: $(head -c 60 <<<"$R")" nonempty_string "$R"
check "streamed reply is non-empty: $(head -c 60 <<<"$RS")" nonempty_string "$RS"
check "streamed reply equals the non-streamed one (temperature 0)" test "$R" = "$RS" -a "$R" != null
echo "info  streamed reply usage: $(get stream usage.reply)"

# --- 7. A forced tool call -----------------------------------------------------------
# A second server with llama-cpp-python's function-calling chat format answers a request
# whose tool_choice names the tool with a grammar-constrained call, even from this
# random-weight model; the agent must run it and send the tool message back.
TPORT=$(free_port)
TBASE=http://127.0.0.1:$TPORT
step "llama_cpp.server --chat_format chatml-function-calling on $TBASE (log: $WORK/tool-server.log)"
"$PY" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$TPORT" --n_ctx 512 \
    --chat_format chatml-function-calling >"$WORK/tool-server.log" 2>&1 &
PIDS+=($!)
TPID=$!
for _ in $(seq 120); do
    curl -sf "$TBASE/v1/models" -o "$WORK/tool-models.json" && break
    kill -0 "$TPID" 2>/dev/null || { tail -20 "$WORK/tool-server.log" >&2; break; }
    sleep 1
done
if [ -s "$WORK/tool-models.json" ]; then
    sed -e "s#__BASE_URL__#$TBASE#g" -e "s#__MODEL__#$MODEL_ID#g" "$HERE/tool-flow.yaml" >"$WORK/tool-flow.yaml"
    rm -f "$WORK"/tools.db "$WORK"/tools.db-wal "$WORK"/tools.db-shm
    step "illumo run $WORK/tool-flow.yaml (tools)"
    if LLAMA_CHECK_KEY=none "$ILLUMO" run "$WORK/tool-flow.yaml" -q -o "$WORK/tools.json" \
        --tracer sqlite --tracer-arg "db_path=$WORK/tools.db" 2>"$WORK/tools.err"; then
        TRC=0
    else
        TRC=$?
    fi
    [ -s "$WORK/tools.err" ] && sed 's/^/  stderr: /' "$WORK/tools.err" || true
    check "the tool run exits 0 (got $TRC)" test "$TRC" = 0
    NCALLS=$(sqlite3 "$WORK/tools.db" "SELECT count(*) FROM spans WHERE name = 'tool python'")
    check "a 'tool python' span: the agent ran the call ($NCALLS)" test "$NCALLS" -ge 1
    NRES=$(sqlite3 "$WORK/tools.db" "SELECT count(*) FROM events WHERE name = 'agent.tool_result'")
    check "an agent.tool_result event: the result went back to the model ($NRES)" test "$NRES" -ge 1
    echo "info  the call: $(sqlite3 "$WORK/tools.db" "SELECT json_extract(attributes, '\$.arguments') FROM events WHERE name = 'agent.tool_call' LIMIT 1")"
else
    check "the function-calling server answers /v1/models" false
fi

printf '\n%s: %d passed, %d failed (%ds; work files in %s)\n' \
    "$([ "$FAILED" = 0 ] && echo PASS || echo FAIL)" "$PASSED" "$FAILED" $((SECONDS - START)) "$WORK"
[ "$FAILED" = 0 ]
