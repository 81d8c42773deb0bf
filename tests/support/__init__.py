"""Helpers shared by the test suite (service discovery, waiting, unique names)."""
