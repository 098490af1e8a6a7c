"""Graph observations: validation into batched tensors, and the flat (torch-geometric style) union.

Environments emit fixed-size padded arrays (see ``docs/CONTRACTS.md``)::

    nodes (B, N, F), node_mask (B, N), edge_index (B, 2, E), edge_attr (B, E, D), edge_mask (B, E)

``to_tensors`` checks them and adds the batch dimension; the graph network works on their dense
form (``agents/dense_graph.py``). ``flatten_graphs`` gives torch-geometric's disjoint union of
the B graphs with padding removed: ``x (V, F)``, ``edge_index (2, M)`` into the rows of ``x``,
``edge_attr (M, D)``, ``batch (V,)`` and ``root_index (B,)`` (row of each graph's node 0). The
tests run torch-geometric's ``TransformerConv`` on it as the reference for the dense attention.
The conversion is vectorized: a cumulative sum over the flattened node mask gives every padded
slot its compacted row.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import torch

GRAPH_KEYS = ("nodes", "node_mask", "edge_index", "edge_attr", "edge_mask")


class GraphBatch(NamedTuple):
    """A batch of graphs as one disjoint-union graph (padding removed)."""

    x: torch.Tensor  # (V, F) features of the valid nodes, graph by graph
    edge_index: torch.Tensor  # (2, M) int64 [source; target] rows of x
    edge_attr: torch.Tensor  # (M, D)
    batch: torch.Tensor  # (V,) int64 graph id of each node
    root_index: torch.Tensor  # (B,) int64 row of each graph's node 0
    num_graphs: int


def _as_tensor(name: str, value, device) -> torch.Tensor:
    """Tensor on ``device`` with the input's dtype (numpy arrays and lists accepted)."""
    if isinstance(value, (np.ndarray, list, tuple)):
        value = torch.as_tensor(np.asarray(value))
    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"graph observation '{name}' must be a numpy array or torch tensor, got {type(value).__name__}"
        )
    return value.to(device)


def _float_tensor(name: str, value, device) -> torch.Tensor:
    value = _as_tensor(name, value, device)
    if value.is_complex():
        raise ValueError(f"graph observation '{name}' must be real-valued, got {value.dtype}")
    return value.float()


def _edge_index_tensor(value, device) -> torch.Tensor:
    """int64 edge indices; float storage (e.g. a rollout buffer) is accepted when integral."""
    index = _as_tensor("edge_index", value, device)
    if index.dtype == torch.bool or index.is_complex():
        raise ValueError(f"graph observation 'edge_index' must be integer, got {index.dtype}")
    if index.is_floating_point() and not torch.equal(index, index.round()):
        raise ValueError("graph observation 'edge_index' holds non-integer values")
    return index.long()


def to_tensors(obs: Mapping, device=None) -> dict:
    """Validate a (possibly unbatched, numpy or torch) graph observation; return batched tensors.

    Returns a dict with the five contract keys: float32 features/masks and int64 edge_index,
    each with a leading batch dimension.
    """
    if not isinstance(obs, Mapping):
        raise ValueError(f"graph observation must be a dict with keys {list(GRAPH_KEYS)}, got {type(obs).__name__}")
    missing = [k for k in GRAPH_KEYS if k not in obs]
    if missing:
        raise ValueError(f"graph observation is missing key(s) {missing}; expected {list(GRAPH_KEYS)}")
    if device is None:
        nodes = obs["nodes"]
        device = nodes.device if isinstance(nodes, torch.Tensor) else torch.device("cpu")
    out = {k: _float_tensor(k, obs[k], device) for k in ("nodes", "node_mask", "edge_attr", "edge_mask")}
    out["edge_index"] = _edge_index_tensor(obs["edge_index"], device)
    if out["nodes"].dim() == 2:  # a single observation: add the batch dimension everywhere
        out = {k: v.unsqueeze(0) for k, v in out.items()}
    _check_shapes(out)
    return out


def _check_shapes(t: dict) -> None:
    nodes, edge_index, edge_attr = t["nodes"], t["edge_index"], t["edge_attr"]
    if nodes.dim() != 3:
        raise ValueError(f"'nodes' must be (B, N, F) or (N, F), got shape {tuple(nodes.shape)}")
    b, n, _ = nodes.shape
    if n < 1:
        raise ValueError("'nodes' has no node slots; node 0 (the controlled object) is required")
    if edge_index.dim() != 3 or edge_index.shape[:2] != (b, 2):
        raise ValueError(f"'edge_index' must be (B, 2, E) with B={b}, got shape {tuple(edge_index.shape)}")
    e = edge_index.shape[2]
    expected = {"node_mask": (b, n), "edge_mask": (b, e)}
    for key, shape in expected.items():
        if tuple(t[key].shape) != shape:
            raise ValueError(
                f"'{key}' must have shape {shape} to match 'nodes'/'edge_index', got {tuple(t[key].shape)}"
            )
    if edge_attr.dim() != 3 or edge_attr.shape[:2] != (b, e):
        raise ValueError(f"'edge_attr' must be (B, E, D) with B={b}, E={e}, got shape {tuple(edge_attr.shape)}")


def check_references(node_valid: torch.Tensor, edge_index: torch.Tensor, edge_valid: torch.Tensor) -> None:
    """Valid edges must point at valid node slots, and every graph needs its node 0."""
    n = node_valid.shape[1]
    if not bool(node_valid[:, 0].all()):
        bad = torch.nonzero(~node_valid[:, 0]).flatten().tolist()
        raise ValueError(
            f"node_mask[:, 0] must be 1 (node 0 is the controlled object); missing in batch element(s) {bad[:10]}"
        )
    valid_ends = edge_valid.unsqueeze(1).expand_as(edge_index)
    # Checked without boolean indexing (a nonzero and a gather, the slowest part of a minibatch's
    # densification); the message's extremes are computed only on failure.
    if bool((((edge_index < 0) | (edge_index >= n)) & valid_ends).any()):
        used = edge_index[valid_ends]
        raise ValueError(
            f"edge_index has values outside [0, {n}) on valid edges (min {int(used.min())}, max {int(used.max())})"
        )
    endpoint_valid = torch.gather(node_valid, 1, edge_index.clamp(0, n - 1).flatten(1)).view_as(edge_index)
    if not bool((endpoint_valid.all(dim=1) | ~edge_valid).all()):
        raise ValueError("edge_index references padding nodes (node_mask 0) on edges with edge_mask 1")


def flatten_graphs(obs: Mapping, device=None) -> GraphBatch:
    """Convert a padded graph observation (batched or single, numpy or torch) to a ``GraphBatch``."""
    return flatten_tensors(to_tensors(obs, device))


def flatten_tensors(t: Mapping[str, torch.Tensor]) -> GraphBatch:
    """``flatten_graphs`` for a dict already returned by ``to_tensors`` (possibly with features changed,
    e.g. normalised)."""
    nodes, edge_index = t["nodes"], t["edge_index"]
    b, n, f = nodes.shape
    e, d = t["edge_attr"].shape[1:]
    node_valid = t["node_mask"] > 0.5
    edge_valid = t["edge_mask"] > 0.5
    check_references(node_valid, edge_index, edge_valid)

    flat_valid = node_valid.reshape(-1)
    # Row of each padded slot b*N + i after removing padding (meaningless for padding slots).
    compact_row = torch.cumsum(flat_valid.long(), 0) - 1
    graph_ids = torch.arange(b, device=nodes.device)

    x = nodes.reshape(b * n, f)[flat_valid]
    batch = graph_ids.repeat_interleave(n)[flat_valid]
    padded_index = edge_index + (graph_ids * n).view(b, 1, 1)  # per-graph -> global padded slot
    padded_index = padded_index.permute(1, 0, 2).reshape(2, b * e)[:, edge_valid.reshape(-1)]
    edge_attr = t["edge_attr"].reshape(b * e, d)[edge_valid.reshape(-1)]
    root_index = compact_row[graph_ids * n]
    return GraphBatch(x, compact_row[padded_index], edge_attr, batch, root_index, b)
