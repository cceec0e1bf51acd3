"""Reusable test fixtures: fake host roots with real ELF libraries and real ld.so.cache files."""
