"""partialnet's reference interpreter of Core ML ML programs: a package's numbers checked where Core ML is absent.

Core ML itself runs only on Apple's systems, and coremltools cannot predict anywhere else. This runner
executes the package's own program (the MIL operations in its `main` function, the weights from its blob
file) op by op with torch on the CPU, so a package exported on Linux is judged by the logits its program
computes, not by static checks alone.

Each op computes in fp32 from its inputs and rounds its result to the type the program declares for it:
an fp16 program is evaluated with fp16 storage between ops and fp32 arithmetic inside them, which is how
Core ML's CPU and GPU paths evaluate fp16 programs (the Neural Engine's own rounding may differ within the
fp16 gates). Every op's result is checked against the shape the program declares, so a program whose
structure was altered fails loudly instead of computing something else.

Only the ops partialnet's exporter emits are known (OPS); a program with any other op is refused with
its name, and the verification verdict is then "static only", never a silent pass.

Image-input packages take pixel values (0-255) and normalise inside: this runner feeds them the
unquantised pixels of the normalised batch, so what it judges is the program's arithmetic; the uint8
rounding of a real camera image happens outside the program.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from partialnet.errors import BadInput
from partialnet.exporters import mlpackage
from partialnet.preprocess import IMAGENET_MEAN, IMAGENET_STD

FLOAT_TYPES = {mlpackage.MIL_FP16: torch.float16, mlpackage.MIL_FP32: torch.float32}  # what values are rounded to between ops
CAST_TYPES = {"fp16": torch.float16, "fp32": torch.float32, "int32": torch.int32, "bool": torch.bool}


def _int_list(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    spatial = x.dim() - 2
    strides = _int_list(strides) if strides is not None else [1] * spatial
    dilations = _int_list(dilations) if dilations is not None else [1] * spatial
    kernel = list(weight.shape[2:])
    if pad_type == "custom":
        pads = _int_list(pad) if pad is not None else [0] * (2 * spatial)
    elif pad_type == "valid":
        pads = [0] * (2 * spatial)
    elif pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            low = total - total // 2 if pad_type == "same_lower" else total // 2
            pads += [low, total - low]
    else:
        raise BadInput(f"conv pad_type {ascii(pad_type)} is not one the reference interpreter knows")
    if len(pads) != 2 * spatial or spatial != 2:
        raise BadInput(f"conv with {spatial} spatial dims and pad {pads}")
    x = F.pad(x, (pads[2], pads[3], pads[0], pads[1]))
    return F.conv2d(x, weight, bias, stride=strides, dilation=dilations, groups=int(groups))


def _split(x, axis, num_splits=None, split_sizes=None):
    axis = int(axis)
    if split_sizes is not None:
        sizes = _int_list(split_sizes)
    elif num_splits is not None:
        if x.shape[axis] % int(num_splits):
            raise BadInput(f"split of {x.shape[axis]} into {int(num_splits)} equal parts")
        sizes = [x.shape[axis] // int(num_splits)] * int(num_splits)
    else:
        raise BadInput("split without num_splits or split_sizes")
    if sum(sizes) != x.shape[axis]:
        raise BadInput(f"split sizes {sizes} do not add up to {x.shape[axis]}")
    return tuple(torch.split(x, sizes, dim=axis))


def _concat(values, axis, interleave=False):
    axis = int(axis)
    if not interleave:
        return torch.cat(values, dim=axis)
    axis = axis % values[0].dim()
    stacked = torch.stack(values, dim=axis + 1)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


def _reduce_mean(x, axes=None, keep_dims=False):
    dims = _int_list(axes) if axes is not None else list(range(x.dim()))
    return x.mean(dim=dims, keepdim=bool(keep_dims))


def _reshape(x, shape):
    shape = _int_list(shape)
    if len(shape) == x.dim():
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    elif 0 in shape:
        raise BadInput(f"reshape to {shape}: 0 needs a target of the input's rank")
    return x.reshape(shape)


def _layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    dims = _int_list(axes) if axes is not None else list(range(x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    out = (x - mean) / torch.sqrt(var + float(epsilon))
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    return out


def _gelu(x, mode="EXACT"):
    if mode == "EXACT":
        return F.gelu(x)
    if mode == "TANH_APPROXIMATION":
        return F.gelu(x, approximate="tanh")
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    raise BadInput(f"gelu mode {ascii(mode)}")


def _matmul(x, y, transpose_x=False, transpose_y=False):
    if transpose_x:
        x = x.transpose(-1, -2)
    if transpose_y:
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


def _linear(x, weight, bias=None):
    return F.linear(x, weight, bias)


def _cast(x, dtype):
    if dtype not in CAST_TYPES:
        raise BadInput(f"cast to {ascii(dtype)}")
    return x.to(CAST_TYPES[dtype])


OPS = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "sqrt": lambda x: torch.sqrt(x),
    "cast": _cast,
    "concat": _concat,
    "conv": _conv,
    "gelu": _gelu,
    "layer_norm": _layer_norm,
    "linear": _linear,
    "matmul": _matmul,
    "reduce_mean": _reduce_mean,
    "relu": lambda x: torch.relu(x),  # T2, S, M, L of both families (T0 and T1 use GELU)
    "reshape": _reshape,
    "sigmoid_hard": lambda x, alpha, beta: torch.clamp(float(alpha) * x + float(beta), 0, 1),
    "softmax": lambda x, axis=-1: torch.softmax(x, dim=int(axis)),
    "split": _split,
    "transpose": lambda x, perm: x.permute(*_int_list(perm)),
}
KNOWN_OPS = frozenset(OPS) | {"const"}


def unknown_ops(package: mlpackage.Package) -> list[str]:
    """Op types in the program the interpreter cannot run (nested blocks count as unknown too)."""
    _, block = mlpackage.main_block(package)
    found = sorted({op.type for op in block.operations if op.type not in KNOWN_OPS or len(op.blocks)})
    return found


def _as_tensor(value):
    """Constants as torch tensors (float ones as float32: ops compute in fp32); strings and bools stay plain."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_:
            return bool(value) if value.ndim == 0 else value
        if value.dtype.kind == "f":
            return torch.from_numpy(value.astype(np.float32))
        if value.ndim == 0:
            return int(value)
        return value
    return value


class MilReferenceRunner:
    """Runs a package's ML program on the CPU with torch; the same interface as every runner."""

    name = "coreml (partialnet's MIL reference interpreter)"

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32", device: str = "cpu"):
        self.path = Path(path)
        self.threads = threads
        self.precision = "unknown"
        self.program = None

    def prepare(self) -> None:
        package = mlpackage.open_package(self.path)
        try:
            unknown = unknown_ops(package)
            if unknown:
                raise BadInput(f"{self.path}: the reference interpreter does not know the op(s) {', '.join(unknown)}")
            function, block = mlpackage.main_block(package)
            self.inputs = {}
            for item in function.inputs:
                code, shape = mlpackage.value_type(item.type)
                if code not in FLOAT_TYPES or shape is None:
                    raise BadInput(f"{self.path}: input {ascii(item.name)} is not a float tensor of static shape")
                self.inputs[item.name] = (FLOAT_TYPES[code], shape)
            if len(self.inputs) != 1:
                raise BadInput(f"{self.path}: the program takes {len(self.inputs)} inputs, expected one")
            self.outputs = list(block.outputs)
            self.constants = {}
            self.steps = []
            weight_types = set()
            for op in block.operations:
                if op.type == "const":
                    value = mlpackage.const_value(package, op)
                    self.constants[op.outputs[0].name] = _as_tensor(value)
                    if op.attributes["val"].WhichOneof("value") == "blobFileValue" and value.dtype.kind == "f":
                        weight_types.add(value.dtype)  # the weights: what the program computes in
                    continue
                declared = [mlpackage.value_type(o.type) for o in op.outputs]
                arguments = {}
                for key, argument in op.inputs.items():
                    bindings = []
                    for binding in argument.arguments:
                        if binding.WhichOneof("binding") != "name":
                            raise BadInput(f"{self.path}: op {op.type} takes an inline value for {ascii(key)}")
                        bindings.append(binding.name)
                    arguments[key] = bindings
                self.steps.append((op.type, arguments, [o.name for o in op.outputs], declared))
            self.precision = "fp16" if weight_types == {np.dtype(np.float16)} else "fp32" if weight_types == {np.dtype(np.float32)} else "mixed"
            self.input_name, (self.input_dtype, self.input_shape) = next(iter(self.inputs.items()))
            description = package.spec.description.input
            self.image = bool(description) and description[0].type.WhichOneof("Type") == "imageType"
        finally:
            package.close()

    def _argument(self, values: dict, name: str, op: str):
        if name in values:
            return values[name]
        if name in self.constants:
            return self.constants[name]
        raise BadInput(f"{self.path}: op {op} reads {ascii(name)} before anything defines it")

    def run(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x.to(self.input_dtype).to(torch.float32)}
        for op_type, arguments, names, declared in self.steps:
            kwargs = {}
            for key, bindings in arguments.items():
                found = [self._argument(values, b, op_type) for b in bindings]
                kwargs[key] = found if op_type == "concat" and key == "values" else found[0]
            try:
                result = OPS[op_type](**kwargs)
            except (TypeError, RuntimeError, ValueError, IndexError) as exc:
                raise BadInput(f"{self.path}: op {op_type} -> {names[0]} cannot run: {str(exc).splitlines()[0][:160]}") from None
            results = result if isinstance(result, tuple) else (result,)
            if len(results) != len(names):
                raise BadInput(f"{self.path}: op {op_type} gives {len(results)} outputs, the program names {len(names)}")
            for name, value, (code, shape) in zip(names, results, declared):
                if shape is not None and tuple(value.shape) != shape:
                    raise BadInput(f"{self.path}: op {op_type} -> {name} computes shape {list(value.shape)}, the program declares {list(shape)}")
                if code in FLOAT_TYPES:
                    value = value.to(FLOAT_TYPES[code]).to(torch.float32)  # the declared storage type, then fp32 again
                values[name] = value
        if len(self.outputs) != 1 or self.outputs[0] not in values:
            raise BadInput(f"{self.path}: the program's outputs {list(self.outputs)} are not one computed tensor")
        return values[self.outputs[0]]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.image:  # pixels 0-255 of the normalised batch: the package normalises inside
            mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
            x = (x * std + mean) * 255.0
        if tuple(x.shape) != tuple(self.input_shape):
            raise BadInput(f"{self.path}: takes input of shape {list(self.input_shape)}, given {list(x.shape)}")
        with torch.inference_mode():
            return self.run(x).float().numpy().copy()

    def close(self) -> None:
        self.steps, self.constants = [], {}
