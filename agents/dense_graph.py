"""Padded graph observations -> dense tensors: nodes (B, N, F), edge features (B, N, N, D), adjacency.

Environments emit fixed-size padded arrays (docs/CONTRACTS.md)::

    nodes (B, N, F), node_mask (B, N), edge_index (B, 2, E), edge_attr (B, E, D), edge_mask (B, E)

The scenes are small (2 to ~20 objects) and fully connected, so the graph network works on
dense tensors: the node axis stays padded and the edge list becomes an N x N grid, entry
``[b, i, j]`` holding the edge from source j to target i (messages flow j -> i). One scatter
builds the grid; from then on every layer is a handful of batched matmuls, with no
per-edge gather/scatter and no Python loop (``agents/gnn.py``). Padding never takes part:
the adjacency lists only valid edges, which may only join valid nodes.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch

from agents.graph_batch import check_references


class DenseGraph(NamedTuple):
    """A batch of padded graphs in dense form."""

    nodes: torch.Tensor  # (B, N, F) node features; padding rows as given (zero after normalisation)
    node_mask: torch.Tensor  # (B, N) float, 1 for real nodes
    edges: torch.Tensor  # (B, N, N, D) edges[b, i, j] = features of edge j -> i, zero where there is none
    adjacency: torch.Tensor  # (B, N, N) bool, adjacency[b, i, j]: an edge j -> i exists


def dense_graph(t: Mapping[str, torch.Tensor]) -> DenseGraph:
    """Dense form of a dict returned by ``graph_batch.to_tensors`` (features possibly normalised).

    Raises ``ValueError`` for edges that point outside the graph or at padding, for a missing
    node 0, and for an ordered node pair listed twice (the grid has one cell per pair).
    """
    nodes, edge_index, edge_attr = t["nodes"], t["edge_index"], t["edge_attr"]
    b, n, _ = nodes.shape
    d = edge_attr.shape[-1]
    edge_valid = t["edge_mask"] > 0.5
    check_references(t["node_mask"] > 0.5, edge_index, edge_valid)
    cells = n * n
    # Cell of edge j -> i in the flattened grid: i * N + j; padding edges go to a spare cell, dropped below.
    cell = torch.where(edge_valid, edge_index[:, 1] * n + edge_index[:, 0], cells)
    count = torch.zeros(b, cells + 1, device=nodes.device).scatter_add_(1, cell, edge_valid.float())
    count = count[:, :cells]
    if bool((count > 1).any()):
        graph = int(torch.nonzero(count > 1)[0, 0])
        raise ValueError(
            f"edge_index lists the same (source, target) pair twice in batch element {graph}; "
            "each ordered node pair may have at most one edge"
        )
    grid = torch.zeros(b, cells + 1, d, dtype=edge_attr.dtype, device=nodes.device)
    grid.scatter_(1, cell.unsqueeze(-1).expand(b, -1, d), edge_attr)
    return DenseGraph(nodes, t["node_mask"], grid[:, :cells].view(b, n, n, d), (count > 0).view(b, n, n))
