"""Graph observations: one node per object, fully connected directed edges.

All quantities are expressed in the task frame (the hole frame: origin at the
centre of the hole's top opening, +z out of the hole), so a policy does not
depend on where the hole happens to be in the world.

Node features, in order. ``NodeLayout`` builds and reads rows by these names (tasks never index
a row by position); ``NodeLayout.names()`` lists one name per column:

| slice | name | meaning |
|---|---|---|
| 0:3 | type | one-hot: held (controlled) object, goal/receptacle (hole), other object |
| 3:6 | pos | object centre position (m) |
| 6:12 | rot6d | first two columns of the object's rotation matrix (continuous, Zhou et al. 2019) |
| 12:12+3K | keypoints | keypoint offsets to the nearest symmetric goal pose (m, ``envs/keypoints.py``); else 0 |
| next 3 | linvel | linear velocity (m/s) |
| next 3 | angvel | angular velocity (rad/s) |
| last 2 | size | peg: radius, length; hole: opening half-width, depth (m) |

Edge features: relative position of the target node w.r.t. the source node
(3, m) and its length (1). Node 0 is always the controlled object.
The flat observation is the node feature matrix of all real nodes, row by row.
"""

from __future__ import annotations

from typing import List

import numpy as np
from gymnasium import spaces

TYPE_CONTROLLED, TYPE_RECEPTACLE, TYPE_OTHER = 0, 1, 2
NUM_TYPES = 3
EDGE_DIM = 4
# Finite bounds (Gymnasium's checker rejects infinite ones). Features are metres, radians and
# their rates, far inside this; the environment clips to it so observations always lie in the space.
FEATURE_BOUND = 100.0


class NodeLayout:
    """The node feature row, by name: ``layout.slice("pos")``, ``layout.row(pos=..., size=...)``.

    Tasks build their rows through ``row`` and read features through ``slice``, so no code
    depends on where a feature sits; the order is the table above (``FEATURES``).
    """

    FEATURES = ("type", "pos", "rot6d", "keypoints", "linvel", "angvel", "size")
    # The pose features (observation noise applies to them): position, orientation, keypoint offsets.
    POSE = ("pos", "rot6d", "keypoints")

    def __init__(self, num_keypoints: int):
        widths = {
            "type": NUM_TYPES,
            "pos": 3,
            "rot6d": 6,
            "keypoints": 3 * num_keypoints,
            "linvel": 3,
            "angvel": 3,
            "size": 2,
        }
        self.num_keypoints = num_keypoints
        self.slices, start = {}, 0
        for name in self.FEATURES:
            self.slices[name] = slice(start, start + widths[name])
            start += widths[name]
        self.dim = start

    def slice(self, name: str) -> slice:
        try:
            return self.slices[name]
        except KeyError:
            raise ValueError(f"unknown node feature {name!r}; features are {list(self.FEATURES)}") from None

    def pose_span(self) -> slice:
        """The contiguous span of the pose features (pos ... keypoints)."""
        return slice(self.slices[self.POSE[0]].start, self.slices[self.POSE[-1]].stop)

    def row(self, node_type: int, **features) -> np.ndarray:
        """A float32 row: the one-hot ``node_type`` plus the named features (the others stay zero)."""
        return self.rows(np.array([node_type]), **features)[0]

    def rows(self, node_types: np.ndarray, **features) -> np.ndarray:
        """(n, dim) float32 rows at once: one-hot ``node_types`` (n,) plus named features, each (n, width)."""
        rows = np.zeros((len(node_types), self.dim), np.float32)
        rows[np.arange(len(node_types)), self.slices["type"].start + np.asarray(node_types)] = 1.0
        for name, value in features.items():
            rows[:, self.slice(name)] = value
        return rows

    def names(self) -> List[str]:
        """One name per column, e.g. ``pos_x`` or ``keypoint1_z``."""
        columns = {
            "type": ["type_controlled", "type_receptacle", "type_other"],
            "keypoints": [f"keypoint{k}_{axis}" for k in range(self.num_keypoints) for axis in "xyz"],
        }
        names = []
        for name in self.FEATURES:
            width = self.slices[name].stop - self.slices[name].start
            default = [f"{name}_{axis}" for axis in "xyz"] if width == 3 else [f"{name}_{i}" for i in range(width)]
            names += columns.get(name, default)
        return names


def node_dim(num_keypoints: int) -> int:
    return NodeLayout(num_keypoints).dim


def node_feature_names(num_keypoints: int) -> List[str]:
    return NodeLayout(num_keypoints).names()


def fully_connected_edges(num_nodes: int) -> np.ndarray:
    """(2, N(N-1)) edge index of all ordered pairs of distinct nodes."""
    source, target = np.nonzero(~np.eye(num_nodes, dtype=bool))
    return np.stack([source, target]).astype(np.int64)


def graph_space(max_nodes: int, num_keypoints: int) -> spaces.Dict:
    max_edges = max_nodes * (max_nodes - 1)
    features = node_dim(num_keypoints)
    return spaces.Dict(
        {
            "nodes": spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, (max_nodes, features), np.float32),
            "node_mask": spaces.Box(0.0, 1.0, (max_nodes,), np.float32),
            "edge_index": spaces.Box(0, max(max_nodes - 1, 0), (2, max_edges), np.int64),
            "edge_attr": spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, (max_edges, EDGE_DIM), np.float32),
            "edge_mask": spaces.Box(0.0, 1.0, (max_edges,), np.float32),
        }
    )


def flat_space(max_nodes: int, num_keypoints: int) -> spaces.Box:
    return spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, (max_nodes * node_dim(num_keypoints),), np.float32)


class GraphBuilder:
    """Turns a (num_nodes, node_dim) feature matrix into the padded graph dict.

    The edge index and masks depend only on the node count, so they are built
    once and copied; the per-step work is the edge features.
    """

    def __init__(self, max_nodes: int, num_keypoints: int):
        self.max_nodes = max_nodes
        self.node_dim = node_dim(num_keypoints)
        self._position = NodeLayout(num_keypoints).slice("pos")
        self.max_edges = max_nodes * (max_nodes - 1)
        self._num_nodes = -1

    def _prepare(self, num_nodes: int) -> None:
        edges = fully_connected_edges(num_nodes)
        self._num_edges = edges.shape[1]
        self._sources, self._targets = edges[0].copy(), edges[1].copy()
        self._edge_index = np.zeros((2, self.max_edges), np.int64)
        self._edge_index[:, : self._num_edges] = edges
        self._node_mask = np.zeros(self.max_nodes, np.float32)
        self._node_mask[:num_nodes] = 1.0
        self._edge_mask = np.zeros(self.max_edges, np.float32)
        self._edge_mask[: self._num_edges] = 1.0
        self._num_nodes = num_nodes

    def build(self, nodes: np.ndarray) -> dict:
        """The padded graph of a fresh (num_nodes, node_dim) array, which the result may keep (no copy)."""
        num_nodes = nodes.shape[0]
        if num_nodes > self.max_nodes:
            raise ValueError(f"{num_nodes} nodes exceed max_nodes={self.max_nodes}")
        if num_nodes != self._num_nodes:
            self._prepare(num_nodes)
        if num_nodes == self.max_nodes and nodes.dtype == np.float32:
            padded = nodes  # the caller hands over a fresh array: no copy needed
        else:
            padded = np.zeros((self.max_nodes, self.node_dim), np.float32)
            padded[:num_nodes] = nodes
        positions = nodes[:, self._position]
        relative = positions[self._targets] - positions[self._sources]
        edge_attr = np.zeros((self.max_edges, EDGE_DIM), np.float32)
        edge_attr[: self._num_edges, :3] = relative
        edge_attr[: self._num_edges, 3] = np.sqrt(np.einsum("ij,ij->i", relative, relative))
        return {
            "nodes": padded,
            "node_mask": self._node_mask.copy(),
            "edge_index": self._edge_index.copy(),
            "edge_attr": edge_attr,
            "edge_mask": self._edge_mask.copy(),
        }
