"""NVIDIA Container Toolkit configuration: config.toml, Docker's daemon.json, the safe-write
primitive and the debug-log follower. Plain Python (no Textual); the UI and the CLI build on it.
"""
