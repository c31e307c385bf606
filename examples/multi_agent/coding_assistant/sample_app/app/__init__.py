"""A tiny app with planted bugs for the coding-assistant example."""
