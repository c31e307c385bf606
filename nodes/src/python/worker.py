# The illumo Python worker: one process per run, started on first use, answering calls
# to Python functions on its stdin/stdout, one JSON object per line.
#
# Request:  {"callable": "pkg.mod.fn", "payload": ..., "has_ctx": bool, "routing": bool,
#            "named_by_data": bool, "illumo_flow": bool}, and when has_ctx, the ctx as JSON
#           on the next line. named_by_data: the name came from ctx or the input, so it
#           must be a function of the flow's own modules (see `user_function`).
#           illumo_flow: a map the function removed keys from is written whole (at the
#           root, `[]`), so the keys are gone as there; otherwise a removed key is null.
# Answers:  {"ok": true, "output": ..., "writes": [[[key, ...], value], ...],
#            "routes": [[target, confidence, reason, payload, has_payload], ...] | null,
#            "stdout": "...", "stderr": "..."}
#           {"need_ctx": true}       (the function takes ctx and none was sent)
#           {"ok": false, "kind": "import" | "refused" | "exception" | "result", "message": "...",
#            "type": "...", "traceback": "...", "stdout": "...", "stderr": "...",
#            "writes": [...]}  (an exception: what the function changed in ctx before it)
#
# The calling convention is illumo-flow's: by the names of the first two positional
# parameters (`ctx`/`context` for the context; `payload`, `value`, `data`, `input`,
# `item`, `items` for the payload), with its fallbacks.
import contextlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import io
import json
import os
import sys
import traceback
import types

PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
REQUESTS = os.fdopen(os.dup(0), "r", encoding="utf-8")
# What the functions or their children write to fd 1 must not reach the protocol.
os.dup2(2, 1)
devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(devnull, 0)

WORKER = sys._getframe().f_code.co_filename
CONTEXT_NAMES = {"context", "ctx"}
PAYLOAD_NAMES = {"payload", "value", "data", "input", "item", "items"}


def compat_module():
    """`from illumo_flow.core import Routing` imports even without illumo-flow."""
    try:
        importlib.import_module("illumo_flow.core")
        return
    except Exception:
        pass
    package = types.ModuleType("illumo_flow")
    package.__path__ = []
    core = types.ModuleType("illumo_flow.core")

    class FlowError(Exception):
        pass

    class Routing:
        def __init__(self, target, confidence=None, reason=None):
            self.target = target
            self.confidence = confidence
            self.reason = reason

        def __repr__(self):
            return f"Routing(target={self.target!r}, confidence={self.confidence!r}, reason={self.reason!r})"

        def to_context(self):
            record = {"target": self.target}
            if self.confidence is not None:
                record["confidence"] = self.confidence
            if self.reason is not None:
                record["reason"] = self.reason
            return record

    def unavailable(name):
        # illumo-flow's Python API (building and running flows in Python) is not here:
        # modules that import it still load; using it says why it fails.
        def refuse(*args, **kwargs):
            raise FlowError(
                f"illumo_flow.{name} is illumo-flow's Python API, which illumo's worker does not provide"
            )

        class Unavailable(type):
            # `Flow.from_config(...)`, `FlowRuntime.configure(...)`: any class attribute
            # refuses when called, with the same words.
            def __getattr__(cls, attr):
                if attr.startswith("__"):
                    raise AttributeError(attr)

                def method(*args, **kwargs):
                    raise FlowError(
                        f"illumo_flow.{name}.{attr} is illumo-flow's Python API, which illumo's worker does not provide"
                    )

                return method

        return Unavailable(name, (), {"__init__": refuse, "__module__": "illumo_flow.core"})

    core.Routing = Routing
    core.FlowError = FlowError
    names = [
        "Flow", "FlowRuntime", "RuntimeExecutionReport", "Node", "FunctionNode", "NodeConfig",
        "RoutingNode", "CustomRoutingNode", "LoopNode", "Policy", "Retry", "OnError",
        "ConsoleTracer", "SQLiteTracer", "OtelTracer", "Agent", "RouterAgent", "EvaluationAgent",
    ]
    for name in names:
        setattr(core, name, unavailable(name))
    nodes = types.ModuleType("illumo_flow.nodes")
    for name in ["Agent", "RouterAgent", "EvaluationAgent"]:
        setattr(nodes, name, getattr(core, name))
    for module in (package, core):
        module.Routing = Routing
        module.FlowError = FlowError
    for name in names:
        setattr(package, name, getattr(core, name))
    package.core = core
    package.nodes = nodes

    def stand_in(name):
        # Any other name of illumo-flow's API imports too, and refuses to be used.
        if name.startswith("__"):
            raise AttributeError(name)
        return unavailable(name)

    for module in (package, core, nodes):
        module.__getattr__ = stand_in
    sys.modules["illumo_flow"] = package
    sys.modules["illumo_flow.core"] = core
    sys.modules["illumo_flow.nodes"] = nodes

    class Submodules:
        # `illumo_flow.cli`, `illumo_flow.tracing_db`, ...: empty stand-ins.
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if not fullname.startswith("illumo_flow.") or fullname in sys.modules:
                return None
            return importlib.machinery.ModuleSpec(fullname, Submodules, is_package=True)

        @staticmethod
        def create_module(spec):
            module = types.ModuleType(spec.name)
            module.__path__ = []
            module.__getattr__ = stand_in
            return module

        @staticmethod
        def exec_module(module):
            pass

    sys.meta_path.append(Submodules)


def convention(func):
    """How to call `func`: the arguments it takes, in order (`payload`, `ctx`), or
    "try" when only a call can tell."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return "try"
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not positional:
        return ()
    if len(positional) == 1:
        return ("ctx",) if positional[0].name in CONTEXT_NAMES else ("payload",)
    first, second = positional[0].name, positional[1].name
    if first in CONTEXT_NAMES and second in PAYLOAD_NAMES:
        return ("ctx", "payload")
    if first in PAYLOAD_NAMES and second in CONTEXT_NAMES:
        return ("payload", "ctx")
    if first in PAYLOAD_NAMES:
        return ("payload",)
    if first in CONTEXT_NAMES:
        if len(positional) == 2 and second not in CONTEXT_NAMES:
            return ("ctx", "payload")
        return ("ctx",)
    return "try"


FUNCTIONS = {}


def resolve(path):
    if path in FUNCTIONS:
        return FUNCTIONS[path]
    module_path, _, attr = path.strip().rpartition(".")
    if not module_path:
        raise ImportError(f"`{path}` is not an import path like `package.module.function`")
    module = importlib.import_module(module_path)
    try:
        func = getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module `{module_path}` has no `{attr}`") from None
    if not callable(func):
        raise ImportError(f"`{path}` is not callable")
    FUNCTIONS[path] = (func, convention(func))
    return FUNCTIONS[path]


def _real(path):
    return os.path.realpath(path).rstrip(os.sep) or os.sep


# The folders the flow's own modules come from: the flow's folder, its python_path and
# the working folder (ILLUMO_USER_PATHS); and where Python's own modules and installed
# packages are, which never count as the flow's even when they lie inside one of those.
USER_PATHS = [_real(p) for p in os.environ.get("ILLUMO_USER_PATHS", "").split(os.pathsep) if p]


def _system_paths():
    import site
    import sysconfig

    found = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            found.add(_real(path))
    try:
        found.update(_real(p) for p in site.getsitepackages())
    except AttributeError:
        pass
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    if user_site:
        found.add(_real(user_site))
    return sorted(found)


SYSTEM_PATHS = _system_paths()


def _inside(path, roots):
    return any(
        root == os.sep or path == root or path.startswith(root + os.sep) for root in roots
    )


def _is_users(file):
    if not file:
        return False
    real = _real(file)
    return _inside(real, USER_PATHS) and not _inside(real, SYSTEM_PATHS)


def user_function(path):
    """A function named by data (ctx or the input) may only be one the flow's own modules
    define: a module file under the flow's folders, not Python's own modules or installed
    packages, and the function defined there, not imported into it. Checked before the
    module is imported, so naming another module runs none of its code. Returns the
    reason it is refused, or None."""
    module_path, _, _ = path.strip().rpartition(".")
    top = module_path.split(".")[0]
    if not top:
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None  # resolve() reports that it cannot be imported
    places = [spec.origin] if spec.origin not in (None, "built-in", "frozen") else []
    places += list(spec.submodule_search_locations or [])
    if not places or not all(_is_users(p) for p in places):
        return f"`{top}` is not one of the flow's own modules"
    return None


def check_defined_in_module(path, func):
    module_path, _, _ = path.strip().rpartition(".")
    module = sys.modules.get(module_path)
    if not _is_users(getattr(module, "__file__", None)):
        return f"`{module_path}` is not one of the flow's own modules"
    if getattr(func, "__module__", None) != module_path:
        return f"`{path}` is not defined in `{module_path}` (it comes from `{getattr(func, '__module__', '?')}`)"
    return None


def call(func, how, payload, ctx):
    if how == "try":
        try:
            return func(payload, ctx)
        except TypeError:
            return func(ctx, payload)
    args = [payload if name == "payload" else ctx for name in how]
    return func(*args)


def user_traceback(exc):
    """The traceback from the user's code on: the worker's and importlib's frames left out."""
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == WORKER
        or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")
        or "importlib" + os.sep + "__init__.py" in tb.tb_frame.f_code.co_filename
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def is_routing(value):
    return hasattr(value, "target") and type(value).__name__ == "Routing"


def routes_of(value, routing):
    """illumo-flow's routing results: a Routing, (Routing, payload), or a list of them;
    for a routing node, None or [] is an empty decision (the branch ends). None when
    `value` is not a routing result."""
    if routing and (value is None or (isinstance(value, (list, tuple)) and not value)):
        return []

    def one(item):
        if is_routing(item):
            return [item.target, item.confidence, item.reason, None, False]
        if (
            isinstance(item, (list, tuple))
            and len(item) == 2
            and is_routing(item[0])
            # `[Routing, Routing]` is two routes, not a route and its payload.
            and not is_routing(item[1])
        ):
            route = item[0]
            return [route.target, route.confidence, route.reason, item[1], True]
        return None

    if value is None:
        return None
    single = one(value)
    if single is not None:
        return [single]
    if isinstance(value, (list, tuple)) and value:
        routes = [one(item) for item in value]
        if all(r is not None for r in routes):
            return routes
    return None


def diff(before, after, path, writes, whole_when_removed=False):
    """The writes that turn `before` into `after`: changed or new keys, recursively
    inside maps both have; a removed key is written as null, or with
    `whole_when_removed` the map that lost it is written whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        if whole_when_removed and any(key not in after for key in before):
            writes.append([path, after])
            return
        for key, value in after.items():
            if key not in before:
                writes.append([path + [key], value])
            else:
                diff(before[key], value, path + [key], writes, whole_when_removed)
        for key in before:
            if key not in after:
                writes.append([path + [key], None])
    elif before != after or type(before) is not type(after):
        writes.append([path, after])


def answer(obj):
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        text = json.dumps(
            {
                "ok": False,
                "kind": "result",
                "type": type(exc).__name__,
                "message": f"the function returned a value that is not JSON: {exc}",
                "traceback": "",
                "stdout": obj.get("stdout", ""),
                "stderr": obj.get("stderr", ""),
            }
        )
    PROTOCOL.write(text + "\n")
    PROTOCOL.flush()


def refused(path, why):
    return {
        "ok": False,
        "kind": "refused",
        "type": "PermissionError",
        "message": (
            f"`{path}` was named by ctx or the input, and {why}: such a function must be "
            "defined in a module under the flow's folder, its python_path or the working "
            "folder (not Python's own modules or installed packages)"
        ),
        "traceback": "",
    }


def serve(request, ctx_text):
    path = request["callable"]
    dynamic = request.get("named_by_data", False)
    if dynamic:
        why = user_function(path)
        if why:
            return refused(path, why)
    try:
        func, how = resolve(path)
    except Exception as exc:
        return {
            "ok": False,
            "kind": "import",
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": user_traceback(exc),
            "sys_path": sys.path,
        }
    if dynamic:
        why = check_defined_in_module(path, func)
        if why:
            return refused(path, why)
    wants_ctx = how == "try" or "ctx" in how
    if wants_ctx and ctx_text is None:
        return {"need_ctx": True}
    ctx = json.loads(ctx_text) if wants_ctx else None
    out, err = io.StringIO(), io.StringIO()
    whole = request.get("illumo_flow", False)

    def changes():
        writes = []
        if ctx is not None:
            diff(json.loads(ctx_text), ctx, [], writes, whole)
        return writes

    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = call(func, how, request.get("payload"), ctx)
    except Exception as exc:
        return {
            "ok": False,
            "kind": "exception",
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": user_traceback(exc),
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            # illumo-flow keeps what a raising function changed; natively nothing is kept,
            # so nothing is sent (a value there that is not JSON must not hide the error).
            "writes": changes() if whole else [],
        }
    writes = changes()
    # `(output, delta)`, as illumo-flow reads any 2-tuple: the output is the first item,
    # and a mapping second item is written at the top of ctx (anything else is dropped).
    if isinstance(result, tuple) and len(result) == 2:
        result, delta = result
        if isinstance(delta, dict):
            writes.extend([[key], value] for key, value in delta.items())
    routes = routes_of(result, request.get("routing", False))
    return {
        "ok": True,
        "output": None if routes is not None else result,
        "writes": writes,
        "routes": routes,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
    }


def main():
    compat_module()
    while True:
        line = REQUESTS.readline()
        if not line:
            return
        try:
            request = json.loads(line)
        except ValueError as exc:
            answer({"ok": False, "kind": "protocol", "type": "ValueError", "message": str(exc), "traceback": ""})
            continue
        ctx_text = REQUESTS.readline() if request.get("has_ctx") else None
        answer(serve(request, ctx_text))


main()
