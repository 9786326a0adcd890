"""`python -m reconciler.emulator serve ...`: the emulator server on its own."""

from reconciler.emulator.cli import emulator

emulator(prog_name="reconciler emulator")
