# The PythonExec sandbox: runs code an LLM wrote, one request per line on stdin, one
# answer per line on stdout. Run as `python3 -I -c <this>` in a work folder, under the
# operating-system limits the caller sets (rlimits, namespaces, a scrubbed environment).
#
# Request: {"code": "...", "allowed_imports": [...], "work": "/abs/work/folder"}
# Answer:  {"ok": bool, "stdout", "stderr", "result", "error": {type, message, line,
#           traceback, rule} | null, "refused": bool}
#
# Two layers of its own, before and while user code runs:
#   1. a static check of the code with `ast` (imports, blocked builtins, dunder access);
#   2. an audit hook that denies files outside the work folder, sockets, processes,
#      signals, ctypes and imports outside the allow-list.
import ast
import builtins
import contextlib
import io
import json
import os
import sys
import traceback

PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
REQUESTS = os.fdopen(os.dup(0), "r", encoding="utf-8")
os.dup2(2, 1)
devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(devnull, 0)
WORKER = sys._getframe().f_code.co_filename

BLOCKED_CALLS = {
    "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
    "input", "memoryview", "help", "exit", "quit",
}
ATTRIBUTE_CALLS = {"getattr", "setattr", "delattr", "hasattr"}
MAX_OUTPUT = 64 * 1024
# Modules that reach files, processes, the network or memory directly.
DANGEROUS = {
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "socket", "_socket", "ssl",
    "ctypes", "_ctypes", "multiprocessing", "_multiprocessing", "pty", "signal", "shutil",
    "importlib", "marshal", "pickle", "_pickle", "mmap", "resource", "fcntl", "select",
    "selectors", "asyncio", "threading", "_thread", "http", "urllib", "ftplib", "smtplib",
    "webbrowser", "sqlite3", "_sqlite3", "gc", "inspect", "code", "codeop", "pdb",
}


class Refused(Exception):
    def __init__(self, rule, line=None):
        super().__init__(rule)
        self.rule = rule
        self.line = line


def check(code, allowed):
    """The static layer: every rule, with the line it is broken on."""
    try:
        tree = ast.parse(code, "<code>")
    except SyntaxError:
        return tree_or_syntax_error(code)
    names = ", ".join(allowed)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top not in allowed:
                    raise Refused(f"import of `{alias.name}` is not allowed (allowed: {names})", line)
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if node.level or top not in allowed:
                raise Refused(f"import of `{node.module or '.'}` is not allowed (allowed: {names})", line)
        elif isinstance(node, ast.Name) and node.id in BLOCKED_CALLS:
            raise Refused(f"`{node.id}` is not allowed", line)
        elif isinstance(node, ast.Name) and node.id.startswith("__") and node.id != "__name__":
            raise Refused(f"the name `{node.id}` is not allowed", line)
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            raise Refused(f"the attribute `{node.attr}` is not allowed", line)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_CALLS:
            name = node.args[1] if len(node.args) > 1 else None
            literal = isinstance(name, ast.Constant) and isinstance(name.value, str)
            if not literal:
                raise Refused(f"`{node.func.id}` with a computed attribute name is not allowed", line)
            if name.value.startswith("_"):
                raise Refused(f"`{node.func.id}` of `{name.value}` is not allowed", line)
    return tree


def tree_or_syntax_error(code):
    # Let compile() raise the SyntaxError with its line, as an ordinary error.
    compile(code, "<code>", "exec")


PYTHON_HOMES = tuple(
    os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
)
STATE = {"work": None, "allowed": set(), "armed": False, "preloaded": set(), "network": False}


def inside(path, root):
    return path == root or path.startswith(root + os.sep)


def audit(event, args):
    if not STATE["armed"]:
        return
    if event == "open":
        path, mode = args[0], args[1]
        if isinstance(path, int):
            return
        try:
            real = os.path.realpath(os.fsdecode(path))
        except Exception:
            raise PermissionError("sandbox: opening this file is not allowed")
        writing = isinstance(mode, str) and any(c in mode for c in "wax+")
        if inside(real, STATE["work"]):
            return
        if not writing and any(inside(real, home) for home in PYTHON_HOMES):
            return
        raise PermissionError(f"sandbox: opening `{os.fsdecode(path)}` is not allowed (only the work folder)")
    if event.startswith("socket.") and not STATE["network"]:
        raise PermissionError("sandbox: network access is not allowed")
    if event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "os.kill", "os.killpg", "pty.spawn") or event.startswith("os.exec"):
        raise PermissionError(f"sandbox: `{event}` is not allowed (no processes or signals)")
    if event.startswith("ctypes."):
        raise PermissionError("sandbox: ctypes is not allowed")
    if event == "import":
        # The static check holds user imports to the allow-list; here, whatever imports
        # it (a library's lazy import, a trick), no module that acts on the system loads.
        name = args[0]
        top = name.split(".")[0]
        if top in DANGEROUS and top not in STATE["allowed"]:
            raise ImportError(f"sandbox: import of `{name}` is not allowed")


def jsonable(value):
    """The value as JSON can carry it: an integer too large for 64 bits as its digits
    (JSON readers would round it), anything else JSON has no form for as its repr."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: jsonable(v) for k, v in value.items()}
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def capped(text):
    if len(text) <= MAX_OUTPUT:
        return text, False
    return text[:MAX_OUTPUT], True


def user_traceback(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == WORKER:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def error_line(exc):
    if isinstance(exc, SyntaxError):
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<code>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def run(request, scope):
    code = request["code"]
    allowed = list(request.get("allowed_imports", []))
    out, err = io.StringIO(), io.StringIO()
    result = None
    try:
        tree = check(code, allowed)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, "<code>", "exec")
        tail = compile(last, "<code>", "eval") if last is not None else None
        STATE["allowed"] = set(allowed)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            STATE["armed"] = True
            try:
                builtins.exec(body, scope)
                value = builtins.eval(tail, scope) if tail is not None else None
            finally:
                STATE["armed"] = False
        # `result` when this code sets it (a session keeps an older one around), else
        # the last expression's value.
        sets_result = any(
            isinstance(n, ast.Name) and n.id == "result" and isinstance(n.ctx, ast.Store)
            for n in ast.walk(tree)
        )
        result = scope.get("result") if sets_result else value
        error = None
    except Refused as refused:
        error = {"type": "SandboxRefusal", "message": refused.rule, "line": refused.line,
                 "traceback": "", "rule": refused.rule}
    except BaseException as exc:  # noqa: BLE001 - reported, not raised
        STATE["armed"] = False
        if isinstance(exc, KeyboardInterrupt):
            raise
        message = str(exc)
        rule = message if message.startswith("sandbox:") else None
        error = {"type": type(exc).__name__, "message": message, "line": error_line(exc),
                 "traceback": user_traceback(exc), "rule": rule}
    stdout, out_cut = capped(out.getvalue())
    stderr, err_cut = capped(err.getvalue())
    return {
        "ok": error is None,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_truncated": out_cut,
        "stderr_truncated": err_cut,
        "result": jsonable(result) if error is None else None,
        "error": error,
    }


def main():
    sys.addaudithook(audit)
    scope = {"__name__": "__main__", "__builtins__": builtins}
    while True:
        line = REQUESTS.readline()
        if not line:
            return
        request = json.loads(line)
        STATE["work"] = os.path.realpath(request["work"])
        STATE["network"] = bool(request.get("network", False))
        if not STATE["preloaded"]:
            # The allow-listed modules, and what they import, load before the hook arms.
            for name in request.get("allowed_imports", []):
                try:
                    __import__(name)
                except Exception:
                    pass
            STATE["preloaded"] = set(sys.modules)
        answer = run(request, scope)
        PROTOCOL.write(json.dumps(answer, ensure_ascii=False) + "\n")
        PROTOCOL.flush()


main()
