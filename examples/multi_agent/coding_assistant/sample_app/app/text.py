"""Text helpers."""


def slugify(title):
    """Turn a title into a URL slug: lower case, words joined by dashes."""
    return "_".join(title.lower().split())
