"""CLI subcommands: each module exports register(subparsers) and sits on the plain-Python core."""
