"""Measuring on another machine over OpenSSH: the artifacts are made here, the rows run there.

`ssh` holds the transport (the system's OpenSSH client, never a shell string built from user text),
`host` a connected target for the length of one command (its private folder, uploads, workers,
cleanup), and `agent` what runs on the target (`python -m partialnet.remote.agent`).
"""
