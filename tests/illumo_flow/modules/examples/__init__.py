"""Example flows package for illumo_flow tests."""

from .sample_flows import EXAMPLE_FLOWS

__all__ = ["EXAMPLE_FLOWS"]
