"""Written for the illumo-flow corpus (NOT copied from illumo-flow).

docs/update_requirement.md:566-573 describes `pkg/nodes/final_gate.py` / `pkg.nodes.final_gate`
(referenced as `handler: pkg.nodes.final_gate` at docs/update_requirement.md:476 and :530).
illumo-flow ships no such module; this is the docs' function verbatim.
Other `pkg.nodes.*` handlers (fetch/enrich/aggregate, docs/update_requirement.md:691-708) are
never described, so they are not provided.
"""

from __future__ import annotations


def final_gate(verdict: str, reasons: list[str] | None) -> dict[str, str | list[str] | None]:
    """Return final decision payload./最終合否ペイロード"""
    return {
        "status": verdict,
        "note": "; ".join(reasons) if reasons else None,
        "reasons": reasons,
    }
