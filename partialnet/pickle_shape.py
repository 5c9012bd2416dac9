"""How deep and how large the objects a pickle builds would be, from its opcodes alone, before anything unpickles it.

The opcode count bounds the work of building, not of using what was built: a 200-byte pickle of tuples that hold
the previous tuple twice (DUP, memo reads) is a 2**40-element tree to hash when it meets a dict key, in C, where
no Ctrl-C reaches; a million nested one-element tuples overflow the C stack when hashed (a segfault, in torch.load
as much as here). Each value on the simulated stack keeps its nesting depth and its size counted as a tree (a
shared part counted each time it is reached, as hashing and comparing reach it).
"""

from __future__ import annotations

MAX_NESTING = 200  # a state_dict with optimizer state nests about ten deep
MAX_TREE_SIZE = 50_000_000  # as a tree: only sharing (memo reads, DUP) takes a pickle within the opcode limit past this

GETS = ("GET", "BINGET", "LONG_BINGET")
PUTS = ("PUT", "BINPUT", "LONG_BINPUT")
FILLS = ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD")  # add to the object below their arguments


class Node:
    __slots__ = ("depth", "size")

    def __init__(self, parts=()) -> None:
        self.depth = 1 + max((p.depth for p in parts), default=0)
        self.size = 1 + sum(p.size for p in parts)

    def take(self, parts) -> None:
        self.depth = max(self.depth, 1 + max((p.depth for p in parts), default=0))
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
        self.worst = Node()

    def feed(self, op, arg) -> None:
        if self.lost:
            return
        try:
            self._step(op, arg)
        except (IndexError, KeyError, ValueError, TypeError):
            self.lost = True

    def _step(self, op, arg) -> None:
        name, stack = op.name, self.stack
        if name in GETS:
            stack.append(self.memo[arg])
        elif name in PUTS:
            self.memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1]
        elif name == "DUP":
            stack.append(stack[-1])
        elif name == "MARK":
            stack.append(MARK)
        elif any(s.name == "mark" for s in op.stack_before):
            at = len(stack) - 1 - stack[::-1].index(MARK)
            parts, stack[at:] = stack[at + 1:], []
            if name in FILLS:
                self._fill(stack[-1], parts)
            elif op.stack_after:
                self._push(Node(parts))
        elif name in FILLS:
            parts = [stack.pop() for _ in range(len(op.stack_before) - 1)]
            self._fill(stack[-1], parts)
        else:
            parts = [stack.pop() for _ in op.stack_before]
            if MARK in parts:
                raise ValueError("a mark where a value belongs")
            for _ in op.stack_after:
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
        if node.depth > self.worst.depth or node.size > self.worst.size:
            self.worst = Node()
            self.worst.depth, self.worst.size = max(node.depth, self.worst.depth), max(node.size, self.worst.size)

    def problem(self) -> str | None:
        if self.worst.depth > MAX_NESTING:
            return f"its objects nest over {MAX_NESTING} deep (a state_dict nests about ten)"
        if self.worst.size > MAX_TREE_SIZE:
            return f"it reuses its own parts into a structure of over {MAX_TREE_SIZE:,} elements"
        return None
