"""The `fraudscreen` command line, one module per user group: analyst (data, models,
releases), site_operator (the gateway and its model), hub (the central service); main
builds the parser and runs a verb. Each verb parses its flags and calls the module that
owns the work; nothing outside this package imports it but `python -m fraudscreen`."""

from fraudscreen.cli.main import main

__all__ = ["main"]
