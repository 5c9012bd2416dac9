"""ExecuTorch programs through its Python runtime, XNNPACK's thread pool set before the program loads.

Resetting the pool after a method is loaded crashes the process, so the pool is sized first and the
method loaded afterwards; the runner reports the pool size it reads back.

Per call the runner stays within 1 % of a bare `method.execute([tensor])` loop (scripts/harness_overhead.py
measures it): the input tensor is kept while the caller passes the same array, and the logits are copied
out of the program's planned memory with numpy instead of being cloned into a torch tensor and viewed.
Side by side on T0 at 224, one thread, a fresh input tensor each call and the cloned output each cost
0.4-0.6 %, far more than their Python cost; the runner went from 1.009-1.011x the bare loop to 1.004-1.005x.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from partialnet.runtimes import BaseRunner, InputBinding

COMPILER = "executorch.exir"


def load_runtime():
    """ExecuTorch's Python runtime (its `Runtime` class and the pybinding module), without its compiler.

    Both runtime modules import `executorch.exir._warnings` for one warning class, and importing that runs
    exir's package `__init__`: the whole compiler with torch's dynamo and inductor, 4-5 s of a worker's cold
    start (5.7 s against 1.3 s for torch alone, measured in a fresh process). A program runs without any of
    it, as it does on a phone. So while the runtime is imported, an empty stand-in package (exir's own folder,
    its `__init__` not run) answers for exir, and it is removed at once: a later `import executorch.exir` in
    the same process (an export) runs the real one. Should a future ExecuTorch need more of exir at import,
    the stand-in is dropped and the runtime imported as before.
    """
    import sys

    if COMPILER not in sys.modules and "executorch.runtime" not in sys.modules:
        stand_in = _stand_in()
        if stand_in is not None:
            try:
                from executorch.extension.pybindings import portable_lib
                from executorch.runtime import Runtime

                return Runtime, portable_lib
            except ImportError:
                for name in [n for n in sys.modules if n.startswith((COMPILER + ".", "executorch.runtime"))]:
                    del sys.modules[name]
            finally:
                _remove_stand_in(stand_in)
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    return Runtime, portable_lib


def _stand_in():
    """An empty package in exir's place (its submodules importable from its folder), or None where there is no exir."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec(COMPILER)  # ModuleNotFoundError without executorch: the caller's missing extra
    if spec is None or not spec.submodule_search_locations:
        return None
    stand_in = types.ModuleType(COMPILER)
    stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules[COMPILER] = stand_in
    return stand_in


def _remove_stand_in(stand_in) -> None:
    """Forget the stand-in and what was imported under it, so exir imports whole when an export needs it."""
    import sys

    import executorch

    if sys.modules.get(COMPILER) is stand_in:
        del sys.modules[COMPILER]
    sys.modules.pop(COMPILER + "._warnings", None)
    if getattr(executorch, "exir", None) is stand_in:
        delattr(executorch, "exir")


class ExecuTorchRunner(BaseRunner):
    name = "executorch"

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32", device: str = "cpu"):
        super().__init__(path, threads, precision, device)
        self.method = None
        self.binding, self.inputs = InputBinding(np.float32), None

    def prepare(self) -> None:
        import torch

        from partialnet.exporters.executorch import checked_program, quiet
        from partialnet.exporters.formats import read_io

        data, info = checked_program(self.path)  # loaded in a child first: a damaged program can abort the process
        self.data = data  # the loaded program reads these bytes in place: they must live as long as it does
        self.precision = read_io(self.path, info=info)["precision"]
        with quiet():
            Runtime, portable_lib = load_runtime()
            if self.threads:
                portable_lib._unsafe_reset_threadpool(int(self.threads))
            self.threads = int(portable_lib._threadpool_get_thread_count())
            self.method = Runtime.get().load_program(data).load_method("forward")
        self.torch = torch
        # executorch.runtime's Method has no switch for the output clone; the pybinding method behind it
        # does. Should that private attribute go, the public call still works (one clone slower).
        raw = getattr(self.method, "_method", None)
        self.run = functools.partial(raw, clone_outputs=False) if raw is not None else self.method.execute

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.binding.stale(batch):  # a tensor viewing the caller's array (or its converted copy)
            self.inputs = [self.torch.from_numpy(self.binding.source(batch))]
        # Uncloned outputs live in the program's planned memory, which the next call overwrites: copied out.
        return np.array(self.run(self.inputs)[0].numpy(), dtype=np.float32)

    def close(self) -> None:
        self.method = None
        self.data = None
        self.inputs = self.run = None
        self.binding.clear()
