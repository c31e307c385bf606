"""A tiny service the backend playbook lints, tests and packages."""


def add(a, b):
    return a + b
