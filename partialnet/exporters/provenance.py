"""torch.fx's provenance records, dropped between export stages.

Each fx pass wraps every node's `from_node` history in a new record and deep-copies the old one into it,
so the history (and the copying) grows with every pass: an INT8 ExecuTorch export of T0 at 64x64 took 76.5 s
on a 2-core Xeon, 66.3 s with the history dropped before quantizing, tracing and lowering. partialnet reads none of it
(layer names come from `nn_module_stack`), and ExecuTorch's debug handles, which do read it, are then
numbered from the graph handed to the lowering instead of the original module.
"""

from __future__ import annotations

import torch

FROM_NODE = "from_node"


def forget_provenance(graph_module: torch.nn.Module) -> torch.nn.Module:
    for module in graph_module.modules():
        graph = getattr(module, "graph", None)
        if isinstance(graph, torch.fx.Graph):
            for node in graph.nodes:
                node.meta.pop(FROM_NODE, None)
    return graph_module
