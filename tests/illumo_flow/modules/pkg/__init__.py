"""Written for the illumo-flow corpus (not part of illumo-flow): package for `pkg.nodes`."""
