"""Shared by every test directory: this file puts `tests/` on the import path, so test
modules import the fakes in `support` (clocks, canned APIs, CLI results) from one place."""
