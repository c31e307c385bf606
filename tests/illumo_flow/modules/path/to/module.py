"""Written for the illumo-flow corpus (NOT copied from illumo-flow).

docs/tutorials/03_flow_basics.md:28-29 (and _ja.md) only *describe* this callable
(`callable: path.to.module.post_process`); illumo-flow ships no such module.
This is the smallest module matching the docs.
"""


def post_process(payload):
    return payload.upper()
