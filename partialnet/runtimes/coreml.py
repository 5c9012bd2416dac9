"""Core ML packages through coremltools' predict: macOS only (Core ML itself is not on other systems).

Runs on the CPU compute unit so that verification compares numerics, not the scheduler's choice of
Neural Engine or GPU; bench on a Mac can time the same package.
"""

from __future__ import annotations

import sys

import numpy as np

from partialnet.errors import Unavailable
from partialnet.runtimes import BaseRunner


class CoreMLRunner(BaseRunner):
    name = "coreml"
    model = None

    def prepare(self) -> None:
        if sys.platform != "darwin":
            raise Unavailable("Core ML predicts on macOS only")
        from partialnet.exporters.coreml import load_coremltools
        from partialnet.exporters.formats import read_io

        ct = load_coremltools()
        io = read_io(self.path)
        self.input_name, self.output_name, self.image = io["input_name"], io["output_name"], io["input_kind"] == "image"
        self.precision = io["precision"]
        self.model = ct.models.MLModel(str(self.path), compute_units=ct.ComputeUnit.CPU_ONLY)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.image:  # undo the normalisation the package applies itself; one image per call
            from PIL import Image

            from partialnet.preprocess import IMAGENET_MEAN, IMAGENET_STD

            mean, std = np.array(IMAGENET_MEAN).reshape(3, 1, 1), np.array(IMAGENET_STD).reshape(3, 1, 1)
            outs = []
            for image in batch:
                pixels = np.clip(np.rint((image * std + mean) * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
                outs.append(np.asarray(self.model.predict({self.input_name: Image.fromarray(pixels)})[self.output_name], dtype=np.float32))
            return np.concatenate(outs)
        out = self.model.predict({self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[self.output_name]
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self.model = None
