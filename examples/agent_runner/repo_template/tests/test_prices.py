from app.prices import with_tax


def test_with_tax():
    assert with_tax(100, 0.2) == 120.0


def test_zero_rate():
    assert with_tax(10, 0) == 10
