"""Every file partialnet writes goes through here, because outputs land in shared, writable directories.

The rules, each closing a way an output was lost or redirected:

- Checked before any slow work (`check_outputs`): an existing output needs `--force`; a directory is
  never taken for a file; no output may be one of the inputs (same file after links); two outputs of
  one command may not name the same file; the parent must be creatable and writable, and not kernel state
  (/proc, /sys: root passes every permission check there, and the write fails).
- Staged under an unpredictable name created exclusively (`mkstemp`: O_CREAT|O_EXCL, mode 0600, so a
  symlink planted in advance is never followed) and written through that descriptor; multi-file
  artifacts are staged inside a private `mkdtemp` directory instead.
- Published without replacing (`link`, or `renameat2(RENAME_NOREPLACE)`): of two concurrent writers
  exactly one wins and the other is told the path exists. With `--force` the directory entry itself is
  replaced (`rename`), so a symlink sitting at the final name is replaced, never written through. A group
  is published under a lock on its folders, so two --force runs never leave one's artifact beside the other's
  manifest.
- Cleaned up on any failure, Ctrl-C or SIGTERM (the CLI turns SIGTERM into an exception), with the
  folders made for them, and the outputs of one command are published together or not at all.
- Only files are replaced: a device, FIFO or socket at an output path (or behind a link there) is
  refused even with `--force`.
- JSON is strict: NaN and Infinity never reach a file; they become null with the field named.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from partialnet import libc
from partialnet.errors import BadInput, Unavailable
from partialnet.inputs import describe_errno
from partialnet.mounts import pseudo_file_system
from partialnet.signals import forget_temporary, raise_if_pending, remember_temporary, removed_if_forced


@dataclass(frozen=True)
class Output:
    """One path a command will write, with the option that named it (for messages)."""

    path: Path
    option: str = "output"
    kind: str = "file"  # "file", or "dir" for a directory artifact (e.g. an .mlpackage)
    executable: bool = False  # a script users run: published with the execute bits the umask allows
    written_as: str | None = None  # a WRITTEN_AS key where the option alone does not say (`-o` differs per command)

    @staticmethod
    def of(item: "Output | str | Path") -> "Output":
        return item if isinstance(item, Output) else Output(Path(item))


# ---------------------------------------------------------------- checks before any work


def _identity(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _missing_folders(path: Path) -> tuple[list[Path], Path]:
    """The folders above `path` that do not exist yet (deepest first), and the first one up that does."""
    parent, missing = path.absolute().parent, []
    while not os.path.lexists(parent) and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing, parent


@dataclass
class CommandRecord:
    """What one command's outputs need remembered between the early check and publication.

    `missing_at_check`: output path -> the folders above it that were missing when it was first checked (before the
    slow work); one that exists at publication was made by someone else meanwhile, and is refused if it is not a
    plain folder of ours. `published`: every output published so far, in order: a command stopped between two of
    its groups (matrix's artifacts, then its manifest) must not say "nothing published"; a file written into the
    command's own scratch folders (`scratch`: a deploy model a bench row reads) is no output and is not listed.
    """

    missing_at_check: dict[Path, tuple[Path, ...]] = field(default_factory=dict)
    published: list[Path] | None = None  # kept only inside `command_record` (the CLI's command): None outside
    scratch: list[Path] = field(default_factory=list)

    def note_published(self, paths: list[Path]) -> None:
        if self.published is not None:
            self.published.extend(p for p in paths if not any(p.absolute().is_relative_to(s) for s in self.scratch))


_NO_COMMAND = CommandRecord()  # Python API calls outside a command: entries leave when their group ends
_RECORD: ContextVar[CommandRecord] = ContextVar("partialnet_command_outputs", default=_NO_COMMAND)


@contextmanager
def command_record() -> Iterator[CommandRecord]:
    """One command's record, gone when the command ends: a long-lived process (tests, the Python API) does not
    carry one command's checks or publications into the next."""
    token = _RECORD.set(CommandRecord(published=[]))
    try:
        yield _RECORD.get()
    finally:
        _RECORD.reset(token)


def refuse_strangers_links(out: Output) -> None:
    """A link on the way to the output that another user planted in a shared (sticky, world-writable) folder is not
    followed: the rule Linux applies with fs.protected_symlinks, which many CI hosts leave off (a link's owner must
    be us or the folder's owner)."""
    me = os.geteuid()
    for folder in [out.path.absolute(), *out.path.absolute().parents]:
        try:
            entry = os.lstat(folder)
            if not stat.S_ISLNK(entry.st_mode):
                continue
            around = os.stat(folder.parent)
        except OSError:
            continue
        shared = around.st_mode & stat.S_ISVTX and around.st_mode & stat.S_IWOTH
        if shared and entry.st_uid not in (me, around.st_uid):  # root too, as the kernel's rule
            raise BadInput(f"{out.option} {out.path}: {folder} is another user's link in a shared folder; refused (it could lead anywhere)")


def check_parent(out: Output) -> None:
    """The output's directory exists or can be created, and can be written."""
    refuse_strangers_links(out)
    ancestor = _missing_folders(out.path)[1]
    try:
        st = os.stat(ancestor)
    except OSError as exc:
        raise BadInput(f"{out.option} {out.path}: cannot create it ({ancestor}: {describe_errno(exc)})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{out.option} {out.path}: cannot create it, {ancestor} is not a directory")
    if os.statvfs(ancestor).f_flag & os.ST_RDONLY:
        raise BadInput(f"{out.option} {out.path}: cannot write there, {ancestor} is on a read-only file system")
    if kind := pseudo_file_system(ancestor):
        raise BadInput(f"{out.option} {out.path}: cannot write there, {ancestor} is on {kind}, a kernel interface that holds no files; "
                       "give a path on a disk")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise BadInput(f"{out.option} {out.path}: cannot write there, no write permission in {ancestor}")


def control_characters(text: str) -> list[str]:
    """The control characters in `text` (C0, DEL, C1), as escapes. A newline in a file name turns a
    generated script's comment into a command, and ESC sequences rewrite the terminal that prints it."""
    return sorted({ascii(c)[1:-1] for c in text if unicodedata.category(c) == "Cc"})


# the file types partialnet writes, with the names that say so: a name that says otherwise is refused, never
# rewritten (a `--json r.csv` is a slip, and matplotlib would write `--plot c.jpg` as a JPEG)
WRITTEN_AS = {"PNG": (".png",), "JSON": (".json",), "CSV": (".csv",), "Markdown": (".md",), "a PyTorch checkpoint": (".pt", ".pth")}
# the options that write the same type on every command
OPTION_WRITES = {"--plot": "PNG", "--json": "JSON", "--csv": "CSV", "--md": "Markdown"}


def check_suffix(out: Output) -> None:
    written_as = out.written_as or OPTION_WRITES.get(out.option)
    suffixes = WRITTEN_AS[written_as] if written_as else ()
    if suffixes and not out.path.name.lower().endswith(suffixes):
        raise BadInput(f"{out.option} {out.path}: it is written as {written_as}; give a name ending in {' or '.join(suffixes)}")


def check_name(path: str | Path, option: str) -> None:
    found = control_characters(str(path))
    if found:
        raise BadInput(f"{option} {ascii(str(path))}: the path holds control characters ({' '.join(found)}); give a plain name")


def check_outputs(
    outputs: Sequence[Output | str | Path | None],
    inputs: Iterable[str | Path | None] = (),
    force: bool = False,
) -> list[Output]:
    """Refuse, before any slow work, every output that would clobber, collide or cannot be written."""
    outs = [Output.of(o) for o in outputs if o is not None]
    inputs = [Path(p) for p in inputs if p is not None]
    input_ids = {ident: p for p in inputs if (ident := _identity(p)) is not None}
    input_real = {os.path.realpath(p): p for p in inputs}
    seen: dict[str, Output] = {}
    for out in outs:
        check_name(out.path, out.option)
    for out in outs:
        path = out.path
        real = os.path.realpath(path)
        ident = _identity(path)
        clash = input_ids.get(ident) if ident else None
        clash = clash or input_real.get(real)
        if clash is not None:
            raise BadInput(f"{out.option} {path} is the input {clash}; choose another output path")
        if real in seen:
            raise BadInput(f"{out.option} {path} and {seen[real].option} {seen[real].path} are the same file; give each its own path")
        seen[real] = out
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            raise BadInput(f"{out.option} {path}: cannot create it, a parent in the path is not a directory") from None
        except OSError as exc:
            raise BadInput(f"{out.option} {path}: {describe_errno(exc)}") from None
        if out.kind == "file" and st is not None and stat.S_ISDIR(st.st_mode):
            raise BadInput(f"{out.option} {path} is a directory; give a file name")
        refuse_special(out, st)
        check_suffix(out)
        if os.path.lexists(path) and not force:
            raise BadInput(f"{out.option} {path} already exists; pass --force to overwrite")
        if os.path.lexists(path):
            refuse_unreplaceable(out)
        check_parent(out)
        _RECORD.get().missing_at_check.setdefault(path.absolute(), tuple(_missing_folders(path)[0]))  # the first check's
    return outs


def special_kind(mode: int) -> str | None:
    """What a directory entry is when it is neither a regular file, a folder nor a link (None otherwise)."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


def refuse_special(out: Output, st: os.stat_result | None) -> None:
    """A device, FIFO or socket at an output path (or behind a link there) is never replaced, even with
    --force: `-o /dev/null --force` run as root in a CI container would otherwise swap the system's
    /dev/null for a file."""
    try:
        entry = os.lstat(out.path)
    except OSError:
        return
    found = special_kind(entry.st_mode) or (special_kind(st.st_mode) if st is not None and stat.S_ISLNK(entry.st_mode) else None)
    if found:
        via = " (behind a link)" if stat.S_ISLNK(entry.st_mode) else ""
        raise BadInput(f"{out.option} {out.path} is {found}{via}, not a file; partialnet writes files and replaces only files: give a file path")


def refuse_unreplaceable(out: Output) -> None:
    """An existing output --force cannot replace, said before the work: in a sticky folder (a shared /tmp or CI
    folder) only the entry's owner or the folder's may replace it, and finding out at publication lost the
    group's other outputs."""
    try:
        entry, folder = os.lstat(out.path), os.stat(out.path.absolute().parent)
    except OSError:
        return
    me = os.geteuid()
    if folder.st_mode & stat.S_ISVTX and me not in (0, entry.st_uid, folder.st_uid):
        raise BadInput(f"{out.option} {out.path} belongs to another user in a shared (sticky) folder: --force cannot replace it; "
                       "give another path")


def refuse_existing(paths: Sequence[str | Path], force: bool) -> None:
    """The old name of `check_outputs` for callers with plain paths and no inputs."""
    check_outputs(list(paths), (), force)


# ---------------------------------------------------------------- staging and publishing


@dataclass(eq=False)
class Staged:
    """Where a writer puts one output before it is published.

    Single files: write through `file` (an exclusively created temp file); a library that insists on
    a path may use `path`, which is that same file. Directory artifacts: write `path` (inside a
    private directory only this process can enter).
    """

    output: Output
    path: Path
    file: BinaryIO | None = None
    private_dir: Path | None = None
    _ident: tuple | None = field(default=None, repr=False)
    dropped: bool = False  # left out of the group's publication (a format of `export --format all` that failed)
    aside: Path | None = field(default=None, repr=False)  # with --force: the entry it replaced, put back if the group fails

    def drop(self) -> None:
        self.dropped = True

    def write_bytes(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as exc:  # a full disk names the output it was writing, not "a working file"
            raise _os_error(exc, self.output.path) from None

    def flush(self) -> None:
        """Make what was written visible to readers of `path` (verification reads the staged file)."""
        if self.file is not None:
            try:
                self.file.flush()
            except OSError as exc:
                raise _os_error(exc, self.output.path) from None

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def write_json(self, data) -> None:
        self.write_bytes(dumps_strict(data).encode())

    def save_torch(self, obj) -> None:
        """torch.save through memory: writing to the file itself, torch turns a full disk (ENOSPC) into a
        RuntimeError ("unexpected pos"), which no caller can tell from a bug."""
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        self.write_bytes(buffer.getbuffer())


@contextmanager
def scratch_folder(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A command's private working folder (mode 0700, in $TMPDIR unless `parent` is given), removed when the
    block ends however it ends, even by a forced stop (a second Ctrl-C or SIGTERM)."""
    scratch = _RECORD.get().scratch
    with tempfile.TemporaryDirectory(prefix=prefix, dir=parent) as work, removed_if_forced(work, "tree"):
        scratch.append(Path(work).absolute())
        try:
            yield Path(work)
        finally:
            scratch.remove(Path(work).absolute())


def _stage(out: Output, created: list[Path]) -> Staged:
    """`created` collects the folders made for it, so a command that publishes nothing takes them back."""
    for folder in _RECORD.get().missing_at_check.get(out.path.absolute(), ()):
        if os.path.lexists(folder):
            _refuse_planted(out, folder)
    missing = _missing_folders(out.path)[0]
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            _refuse_planted(out, folder)
            continue
        created.append(folder)
        remember_temporary(folder, "folder")
    parent = out.path.absolute().parent
    prefix = f".{os.fsdecode(os.fsencode(out.path.name)[:80])}."  # bytes, not characters: 80 CJK characters are 240 bytes
    if out.kind == "dir":
        private = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=parent))
        remember_temporary(private, "tree")
        return Staged(out, private / out.path.name, private_dir=private)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=parent)
    remember_temporary(name, "file")
    st = os.fstat(fd)
    return Staged(out, Path(name), file=os.fdopen(fd, "w+b"), _ident=(st.st_dev, st.st_ino))


def _refuse_planted(out: Output, folder: Path) -> None:
    """A folder that did not exist when the outputs were checked, made by someone else since: a link there (to
    another user's folder, in a shared CI directory) or another user's folder would take our files."""
    try:
        st = os.lstat(folder)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        what = "a link" if stat.S_ISLNK(st.st_mode) else "not a folder" if not stat.S_ISDIR(st.st_mode) else "another user's folder"
        raise BadInput(f"{out.option} {out.path}: {folder} appeared while this command ran and is {what}; nothing was written")


def remove_tree(root: Path) -> None:
    """Remove a folder we own, however deep (shutil.rmtree recurses: a 1,200-deep tree raises RecursionError),
    never following a link: one directory descriptor open at a time, names relative to it."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root, flags)
    except OSError:
        return
    names: list[str] = []  # the path from root down to fd's folder
    try:
        while True:
            child = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        child = entry.name
                        break
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                    except OSError:
                        pass
            if child is not None:
                try:
                    inner = os.open(child, flags, dir_fd=fd)
                except OSError:
                    return  # cannot go on safely: leave the rest rather than follow something else
                os.close(fd)
                fd, names = inner, [*names, child]
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            try:
                os.rmdir(names.pop(), dir_fd=fd)
            except OSError:
                return
    finally:
        os.close(fd)
    try:
        os.rmdir(root)
    except OSError:
        pass


def _discard(staged: Staged) -> None:
    forget_temporary(staged.private_dir or staged.path)
    if staged.file is not None and not staged.file.closed:
        try:
            staged.file.close()
        except OSError:
            pass  # a full disk fails the buffered flush again on close; the descriptor is closed and the file still goes
    if staged.private_dir is not None:
        remove_tree(staged.private_dir)
    elif staged.file is not None:
        try:
            if _lidentity(staged.path) == staged._ident:
                os.unlink(staged.path)
        except OSError:
            pass


def _lidentity(path: Path) -> tuple | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


RENAME_NOREPLACE = 1
AT_FDCWD = -100


def _renameat2_noreplace(src: Path, dst: Path) -> bool:
    """rename without replacing (Linux); False where the call or the file system lacks it."""
    fn = libc.function("renameat2")
    if fn is None:
        return False
    rc = fn(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE)
    if rc == 0:
        return True
    err = libc.last_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _publish_noreplace(staged: Staged) -> None:
    src, dst = staged.path, staged.output.path
    if staged.output.kind == "file":
        try:
            os.link(src, dst, follow_symlinks=False)
            os.unlink(src)
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
        if not _renameat2_noreplace(src, dst):
            raise Unavailable(f"{dst}: this file system supports neither hard links nor rename-without-replace; pass --force")
        return
    if _renameat2_noreplace(src, dst):
        return
    os.mkdir(dst)  # exclusive: the loser of a race fails here; then the empty directory is replaced
    os.rename(src, dst)


def _publish_replace(staged: Staged) -> None:
    """With --force: the old entry is set aside first (`staged.aside`), so a group whose later output fails can
    put it back; replacing it outright lost the user's previous output while saying "nothing was written"."""
    src, dst = staged.path, staged.output.path
    refuse_special(staged.output, None)  # one made there while this command ran is not replaced either
    if os.path.lexists(dst):
        staged.aside = _set_aside(staged)
    if staged.output.kind == "file":
        os.replace(src, dst)  # replaces the entry itself: a symlink at dst is replaced, not followed
        return
    if os.path.lexists(dst):  # a file or link where the folder goes, that could not be set aside
        os.unlink(dst)
    os.rename(src, dst)


def _set_aside(staged: Staged) -> Path | None:
    """Keep the entry at the output path reachable under another name until the group is published: an old
    folder inside the private staging folder; an old file (or link) as a second hard link beside it, under an
    unpredictable name. None where neither can be made (then the old entry is lost with a failed group, as before)."""
    dst = staged.output.path
    if staged.output.kind == "dir" and os.path.isdir(dst) and not os.path.islink(dst):
        old = staged.private_dir / ".replaced"
        os.rename(dst, old)  # removed with the private directory once the group is published
        return old
    for _ in range(8):
        aside = dst.with_name(f".{os.fsdecode(os.fsencode(dst.name)[:80])}.{os.urandom(6).hex()}.replaced")
        try:
            os.link(dst, aside, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError:
            return None
        remember_temporary(aside, "file")
        if staged.output.kind == "dir":
            os.unlink(dst)
        return aside
    return None


def _finish_file(staged: Staged) -> None:
    f = staged.file
    f.flush()
    os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(f.fileno(), (0o777 if staged.output.executable else 0o666) & ~umask)
    f.close()
    if _lidentity(staged.path) != staged._ident:
        raise BadInput(f"{staged.output.path}: its temporary file {staged.path} was replaced while being written; nothing published")


def _check_written(staged: Staged) -> None:
    if staged.file is not None:
        if staged.file.tell() == 0 and os.fstat(staged.file.fileno()).st_size == 0:
            raise RuntimeError(f"internal: nothing was written for {staged.output.path}")
        _finish_file(staged)
    elif not os.path.lexists(staged.path) or os.path.islink(staged.path):
        raise RuntimeError(f"internal: {staged.path} was not written")
    else:
        _finish_tree(staged.path)


def _finish_tree(root: Path) -> None:
    """A directory artifact as the umask says, like every single file (a library writes some of its files
    0600 inside the private 0700 staging folder); it holds folders and regular files only."""
    umask = os.umask(0)
    os.umask(umask)
    stack = [root]
    while stack:
        folder = stack.pop()
        os.chmod(folder, 0o777 & ~umask)
        for entry in os.scandir(folder):
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                stack.append(Path(entry.path))
            elif stat.S_ISREG(mode):
                os.chmod(entry.path, 0o666 & ~umask)
            else:
                raise RuntimeError(f"internal: {entry.path} in a directory artifact is not a folder or a regular file")


def _os_error(exc: OSError, what: Path) -> Exception:
    """A write that failed for a reason the user can act on, as one line with the right exit code."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable(f"{what}: no space left on the device (or quota exceeded); nothing was written")
    if exc.errno == errno.EROFS:
        return BadInput(f"{what}: read-only file system; nothing was written")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BadInput(f"{what}: permission denied; nothing was written")
    if exc.errno == errno.EEXIST:
        return BadInput(f"{what} already exists (created by another process while this one ran); pass --force to overwrite")
    return BadInput(f"{what}: cannot write ({describe_errno(exc)}); nothing was written")


@contextmanager
def atomic_outputs(
    outputs: Sequence[Output | str | Path], force: bool = False, inputs: Iterable[str | Path | None] = ()
) -> Iterator[list[Staged]]:
    """Stage every output; publish them all if the block succeeds, none if anything fails."""
    outs = check_outputs(outputs, inputs, force)
    staged: list[Staged] = []
    published: list[Staged] = []
    created: list[Path] = []
    current: Path | None = outs[0].path if outs else Path(".")
    try:
        for out in outs:
            current = out.path
            staged.append(_stage(out, created))
        current = None  # the command's own work: a failure there names its own file (a full $TMPDIR is not the output's disk)
        yield staged

        raise_if_pending()  # a stop request that a library swallowed still stops before anything is published
        kept = [s for s in staged if not s.dropped]
        for s in kept:
            current = s.output.path
            _check_written(s)
        with _folders_locked([s.output.path.absolute().parent for s in kept]):
            for s in kept:
                current = s.output.path
                if s.output.kind == "dir":
                    s._ident = _lidentity(s.path)  # the tree as ours, to take back if a later output of the group fails
                (_publish_replace if force else _publish_noreplace)(s)
                published.append(s)
                if s.private_dir is None:
                    forget_temporary(s.path)  # published under its own name: nothing left at the staged one
        if published:
            _RECORD.get().note_published([s.output.path for s in published])
            for folder in created:
                forget_temporary(folder)
            created.clear()  # the folders now hold what was published
    except OSError as exc:
        _unpublish(published)
        raise _os_error(exc, current or Path(exc.filename or "a working file of the command")) from None
    except BaseException:
        _unpublish(published)
        raise
    finally:
        _clean_up(staged, published, created)
        for out in outs:
            _RECORD.get().missing_at_check.pop(out.path.absolute(), None)  # used: a later command checks afresh


LOCK_WAIT_S = 60.0  # publishing a group takes milliseconds: a lock held this long is a stopped process's


@contextmanager
def _folders_locked(folders: list[Path]) -> Iterator[None]:
    """Two commands publishing one group with --force (a CI retry beside the first run) interleaved file by file:
    one run's artifact beside the other's manifest, both exit 0. An advisory lock on each output folder (flock on
    the folder itself: no lock file is left behind), taken in path order so two groups never wait on each other,
    makes each group's publication one step. Where a file system has no locks (some network mounts), none."""
    import fcntl
    import time

    fds, by_identity = [], {}
    try:
        for folder in set(folders):
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                continue  # the publication itself says what is wrong with the folder
            fds.append(fd)
            st = os.fstat(fd)
            by_identity.setdefault((st.st_dev, st.st_ino), (fd, folder))  # `f1` and `f1/../f1` (or a link): one lock, not two
        for _, (fd, folder) in sorted(by_identity.items()):  # one order for every process, however each names its folders
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Unavailable(f"{folder}: another process has been publishing there for {LOCK_WAIT_S:g} s; nothing was written") from None
                    raise_if_pending()
                    time.sleep(0.005)
                except OSError:
                    break  # no locks here (ENOLCK, EINVAL): publish as before
        yield
    finally:
        for fd in fds:
            os.close(fd)  # releases its lock


def _clean_up(staged: list[Staged], published: list[Staged], created: list[Path]) -> None:
    """However a group ended: what was set aside goes, staged files not published go, and the folders made for
    a group that published nothing (deepest first; one another process has filled stays)."""
    _drop_asides(staged)
    for s in staged:
        if s.private_dir is not None or not any(s is p for p in published):
            _discard(s)
    for folder in reversed(created):
        forget_temporary(folder)
        try:
            os.rmdir(folder)
        except OSError:
            pass


def published_so_far() -> list[Path]:
    return list(_RECORD.get().published or ())


def _unpublish(published: list[Staged]) -> None:
    """Take back the outputs of a group whose later member failed, if they are still ours, and put back what
    --force had set aside in their place."""
    for s in reversed(published):
        dst = s.output.path
        try:
            if _lidentity(dst) != s._ident:
                continue  # not ours any more: leave it
            if s.output.kind == "dir":
                remove_tree(dst)
            if s.aside is not None:
                os.replace(s.aside, dst)
                forget_temporary(s.aside)
                s.aside = None
            elif s.output.kind == "file":
                os.unlink(dst)
        except OSError:
            pass


def _drop_asides(staged: list[Staged]) -> None:
    """The group is published (or failed and restored): what was set aside beside the outputs goes."""
    for s in staged:
        if s.aside is not None and s.aside.parent != s.private_dir:
            forget_temporary(s.aside)
            try:
                os.unlink(s.aside)
            except OSError:
                pass


def write_file(path: str | Path, data: bytes | str, force: bool = False, inputs: Iterable[str | Path | None] = ()) -> None:
    with atomic_outputs([path], force, inputs) as (staged,):
        staged.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(path: str | Path, data, force: bool = False, inputs: Iterable[str | Path | None] = ()) -> None:
    write_file(path, dumps_strict(data), force, inputs)


# ---------------------------------------------------------------- strict JSON


def json_safe(data, where: str = "$", nulled: list | None = None):
    """`data` with every NaN/Infinity replaced by None; `nulled` collects where and what each was."""
    if isinstance(data, bool) or data is None or isinstance(data, (int, str)):
        return data
    if not isinstance(data, float) and hasattr(data, "item") and getattr(data, "shape", None) == ():
        return json_safe(data.item(), where, nulled)  # numpy and torch scalars
    if isinstance(data, float):
        value = data
        if math.isfinite(value):
            return value
        if nulled is not None:
            nulled.append({"field": where, "was": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")})
        return None
    if isinstance(data, dict):
        return {str(k): json_safe(v, f"{where}.{k}", nulled) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v, f"{where}[{i}]", nulled) for i, v in enumerate(data)]
    if hasattr(data, "tolist"):
        return json_safe(data.tolist(), where, nulled)
    if isinstance(data, Path):
        return str(data)
    raise TypeError(f"internal: {where} holds a {type(data).__name__}, which is not JSON")


def dumps_strict(data, indent: int | None = 2) -> str:
    """JSON text that every strict parser reads: non-finite numbers become null, listed under "non_finite"."""
    nulled: list = []
    safe = json_safe(data, "$", nulled)
    if nulled and isinstance(safe, dict):
        safe["non_finite"] = nulled
    return json.dumps(safe, indent=indent, allow_nan=False) + "\n"
