"""Reusable test helpers, shared by all suites (imported as ``helpers.<module>``: tests/conftest.py
puts tests/ on sys.path)."""
