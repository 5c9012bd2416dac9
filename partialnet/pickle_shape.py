"""How deep and how large the objects a pickle builds would be, from its opcodes alone, before anything unpickles it.

The opcode count bounds the work of building, not of using what was built: a 200-byte pickle of tuples that hold
the previous tuple twice (DUP, memo reads) is a 2**40-element tree to hash when it meets a dict key, in C, where
no Ctrl-C reaches; a million nested one-element tuples overflow the C stack when hashed (a segfault, in torch.load
as much as here). Each value on the simulated stack keeps its nesting depth and its size counted as a tree (a
shared part counted each time it is reached, as hashing and comparing reach it).
"""

from __future__ import annotations

import pickletools

MAX_NESTING = 200  # a state_dict with optimizer state nests about ten deep
MAX_TREE_SIZE = 50_000_000  # as a tree: only sharing (memo reads, DUP) takes a pickle within the opcode limit past this

GETS = ("GET", "BINGET", "LONG_BINGET")
PUTS = ("PUT", "BINPUT", "LONG_BINPUT")
FILLS = ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD")  # add to the object below their arguments


def _kind(op) -> tuple[str, int, int]:
    """What an opcode does to the stack, as (kind, values taken, values made): worked out once per opcode, not
    at every step (a 2-million-opcode file is walked whole before it is refused)."""
    before, after = len(op.stack_before), len(op.stack_after)
    for kind, names in (("get", GETS), ("put", PUTS), ("memoize", ("MEMOIZE",)), ("dup", ("DUP",)), ("mark", ("MARK",))):
        if op.name in names:
            return kind, before, after
    if any(s.name == "mark" for s in op.stack_before):
        return ("fill_to_mark" if op.name in FILLS else "build_to_mark"), before, after
    return ("fill" if op.name in FILLS else "build"), before, after


KINDS = {op.name: _kind(op) for op in pickletools.opcodes}


class Node:
    __slots__ = ("depth", "size")

    def __init__(self, parts=()) -> None:
        if parts:
            self.depth = 1 + max(p.depth for p in parts)
            self.size = 1 + sum(p.size for p in parts)
        else:  # a leaf: most of any pickle (numbers, strings)
            self.depth = self.size = 1

    def take(self, parts) -> None:
        if parts:
            self.depth = max(self.depth, 1 + max(p.depth for p in parts))
            self.size += sum(p.size for p in parts)


MARK = object()


class Shape:
    """Fed one opcode at a time (pickletools.genops); `problem()` says what is too deep or too large, if anything.
    Where the stream does something this model does not follow (a malformed pickle), it stops judging: the opcode
    limit and the unpickler still apply."""

    def __init__(self) -> None:
        self.stack: list = []
        self.memo: dict = {}
        self.lost = False
        self.depth = self.size = 1  # the worst seen

    def feed(self, op, arg) -> None:
        if self.lost:
            return
        try:
            self._step(op.name, arg)
        except (IndexError, KeyError, ValueError, TypeError):
            self.lost = True

    def _step(self, name: str, arg) -> None:
        kind, before, after = KINDS[name]
        stack = self.stack
        if kind == "build" and not before:  # a leaf (depth and size 1: never the worst); a container is filled later
            for _ in range(after):
                stack.append(Node())
        elif kind == "get":
            stack.append(self.memo[arg])
        elif kind == "put":
            self.memo[arg] = stack[-1]
        elif kind == "memoize":
            self.memo[len(self.memo)] = stack[-1]
        elif kind == "dup":
            stack.append(stack[-1])
        elif kind == "mark":
            stack.append(MARK)
        elif kind in ("fill_to_mark", "build_to_mark"):
            at = len(stack) - 1 - stack[::-1].index(MARK)
            parts, stack[at:] = stack[at + 1:], []
            if kind == "fill_to_mark":
                self._fill(stack[-1], parts)
            elif after:
                self._push(Node(parts))
        elif kind == "fill":
            parts = [stack.pop() for _ in range(before - 1)]
            self._fill(stack[-1], parts)
        else:
            parts = [stack.pop() for _ in range(before)]
            if MARK in parts:
                raise ValueError("a mark where a value belongs")
            for _ in range(after):
                self._push(Node(parts))

    def _push(self, node: Node) -> None:
        self.stack.append(node)
        self._note(node)

    def _fill(self, target, parts) -> None:
        if target is MARK or MARK in parts:
            raise ValueError("a mark where a value belongs")
        target.take(parts)
        self._note(target)

    def _note(self, node: Node) -> None:
        if node.depth > self.depth:
            self.depth = node.depth
        if node.size > self.size:
            self.size = node.size

    def problem(self) -> str | None:
        if self.depth > MAX_NESTING:
            return f"its objects nest over {MAX_NESTING} deep (a state_dict nests about ten)"
        if self.size > MAX_TREE_SIZE:
            return f"it reuses its own parts into a structure of over {MAX_TREE_SIZE:,} elements"
        return None
