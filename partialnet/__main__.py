from partialnet.cli import entry

entry()
