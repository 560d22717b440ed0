"""CLI subcommands: thin functions that parse, validate and call the core (see slmscale/cli.py)."""
