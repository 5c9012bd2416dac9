from partialnet.cli import run

run()
