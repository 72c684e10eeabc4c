"""Generated gRPC stubs for the fraudscreen.v1 API (protos/fraudscreen/v1).

Do not edit: run `python protos/generate.py`. A test fails when these are stale.
"""
