"""fraudscreen: on-site point-of-sale card-fraud screening."""

__version__ = "0.1.0"
