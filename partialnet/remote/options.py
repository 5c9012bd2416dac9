"""Where a command's rows run: `--target ssh://…` and the SSH settings, one typed options family shared
by bench, claims, verify and doctor (its fields' flags are the CLI's)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from partialnet.errors import BadInput
from partialnet.options import defaults_of, flags_of, option, settle


@dataclass
class TargetOptions:
    target: list[str] | None = option(None, "--target", "Run on ssh://[USER@]HOST[:PORT] (repeat or comma-separate for several "
                                      "machines): the rows, checks or engine build run there; artifacts are prepared here.",
                                      cli_type=Optional[list[str]])
    ssh_config: Path | None = option(None, "--ssh-config", "--target: an ssh config file (passed to ssh as -F).", cli_type=Optional[Path])
    accept_new_host_key: bool = option(False, "--accept-new-host-key", "--target: record the key of a host seen for the first "
                                       "time (StrictHostKeyChecking=accept-new); a changed key is still refused.")
    remote_python: str = option("python3", "--remote-python", "--target: the Python on the target that has partialnet "
                                "(same version) installed.")
    given: frozenset[str] | None = field(default=None, repr=False, compare=False)  # the flags typed (None: those off their defaults)

    def __post_init__(self) -> None:
        settle(self)  # a Python caller's ssh_config="~/.ssh/config" string is a path, as --ssh-config's text is

    def addresses(self):
        from partialnet.remote.ssh import parse_targets

        found = parse_targets(self.target)
        typed = [flag.flag for name, flag in flags_of(TargetOptions).items() if name != "target" and name in self.asked()]
        if not found and typed:  # typed at its default too (`--remote-python python3`): it asks for a target that is not there
            raise BadInput(f"{', '.join(typed)} {'goes' if len(typed) == 1 else 'go'} with --target ssh://HOST")
        if self.ssh_config is not None and not self.ssh_config.is_file():
            raise BadInput(f"--ssh-config {self.ssh_config}: not a file")
        if not self.remote_python or len(self.remote_python) > 400 or any(c in self.remote_python for c in "\n\r\0"):
            raise BadInput("--remote-python: expected a path or command name on one line")
        return found

    def asked(self) -> set[str]:
        """The options the user asked for: typed on the command line, or set off their defaults in Python."""
        if self.given is not None:
            return set(self.given)
        defaults = defaults_of(TargetOptions)
        return {name for name in flags_of(TargetOptions) if getattr(self, name) != defaults[name]}

    @contextmanager
    def hosts(self) -> Iterator[list]:
        """Every target, checked and given its private folder, for the command's length; each removed on the
        way out whatever happens."""
        from contextlib import ExitStack

        from partialnet.remote.host import RemoteHost
        from partialnet.remote.ssh import SshSettings, client, shared_connections

        addresses = self.addresses()
        if addresses:
            client("ssh"), client("scp")
        settings = SshSettings(config=self.ssh_config, accept_new_host_key=self.accept_new_host_key)
        with ExitStack() as stack:
            if addresses:  # closed after every host's folder is removed through it (the stack unwinds last-in first)
                settings = stack.enter_context(shared_connections(settings, addresses))
            yield [stack.enter_context(RemoteHost(a, settings, self.remote_python)) for a in addresses]
