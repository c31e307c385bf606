"""Price helpers."""


def with_tax(amount, rate):
    """The amount with tax added, rounded to cents."""
    return round(amount * rate, 2)
