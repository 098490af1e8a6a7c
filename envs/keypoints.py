"""Object keypoints and their distance to the goal, for N objects at once, respecting symmetry.

A keypoint distance compares points fixed on an object with the same points at the object's
goal pose: one number in metres that measures position *and* orientation, with no weighting
between the two. The points must see every degree of freedom that decides the fit:

- a cylinder is symmetric about its axis, so points on the axis see everything that matters;
- a square prism (the box peg, a packed box) fits at every quarter turn about its axis: its
  points sit off the axis, so a yaw error moves them, and its distance is the minimum over the
  four goal poses rotated by quarter turns (``symmetry_rotations``), so every fitting pose is
  a goal and none is penalised;
- a free box (a packed box) fits in every orientation that maps its extents onto themselves
  (``box_symmetry_rotations``): a cube rolled onto a side fills its slot exactly, so a cube has
  24 goal orientations, not only the 4 quarter turns about the vertical.

All arrays are in one frame (the task frame); rotations are 3x3 matrices.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence, Tuple

import numpy as np

SHAPES = ("cylinder", "box")


def axis_offsets(length: float, num_keypoints: int, spacing: float) -> np.ndarray:
    """Heights along the object's axis from its centre, the first at the bottom end (the tip)."""
    return -length / 2.0 + spacing * np.arange(num_keypoints)


def local_keypoints(shape: str, radius: float, length: float, num_keypoints: int, spacing: float) -> np.ndarray:
    """(K, 3) keypoints in the object frame (centre origin, +z along the axis away from the tip).

    Cylinder: on the axis. Box: at the same heights, alternately on the +x and +y face centres
    (``radius`` is half the side), so a rotation about the axis moves them.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape={shape!r} is not one of {list(SHAPES)}")
    points = np.zeros((num_keypoints, 3))
    points[:, 2] = axis_offsets(length, num_keypoints, spacing)
    if shape == "box":
        points[0::2, 0] = radius
        points[1::2, 1] = radius
    return points


def symmetry_rotations(shape: str) -> np.ndarray:
    """(S, 3, 3) rotations about the object's axis under which it looks the same (discretely)."""
    if shape == "cylinder":  # continuous symmetry: the axis keypoints are invariant already
        return np.eye(3)[None]
    turns = [0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi]
    return np.stack(
        [[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]] for a in turns]
    ).round(15)


def box_symmetry_rotations(half_extents: Sequence[float]) -> np.ndarray:
    """(S, 3, 3) rotations that map a box with these half extents onto itself, the identity first.

    They are the proper signed permutation matrices that only exchange axes of equal length: a cube
    has 24 (any face down, any quarter turn), a square prism 8 (quarter turns about its axis, and
    upside down), a box with three different sides 4 (half turns about each axis).
    """
    half = np.asarray(half_extents, dtype=np.float64)
    rotations = []
    for permutation in itertools.permutations(range(3)):
        if not np.allclose(half[list(permutation)], half, rtol=0.0, atol=1e-9):
            continue
        for signs in itertools.product((1.0, -1.0), repeat=3):
            rotation = np.zeros((3, 3))
            rotation[range(3), permutation] = signs  # (R x)_i = sign_i * x_permutation[i]
            if np.linalg.det(rotation) > 0:
                rotations.append(rotation)
    return np.stack(rotations)


def stack_symmetries(groups: Sequence[np.ndarray]) -> np.ndarray:
    """(N, S, 3, 3) one symmetry group per object, the smaller groups padded with their identity.

    A repeated goal pose changes no minimum, so objects of different symmetry share one array.
    """
    size = max(len(group) for group in groups)
    return np.stack([np.concatenate([group, np.repeat(group[:1], size - len(group), axis=0)]) for group in groups])


def goal_keypoints(
    goal_positions: np.ndarray, goal_rotations: np.ndarray, keypoints: np.ndarray, symmetries: np.ndarray
) -> np.ndarray:
    """(N, S, K, 3) keypoints at every symmetric goal pose (computed once per scene: goals do not move).

    goal_positions (N, 3), goal_rotations (N, 3, 3), keypoints (N, K, 3) in each object's frame,
    symmetries (S, 3, 3) shared by all objects or (N, S, 3, 3) one group per object (``stack_symmetries``).
    """
    per_object = symmetries if symmetries.ndim == 4 else symmetries[None]
    goal_frames = goal_rotations[:, None] @ per_object  # (N, S, 3, 3)
    return keypoints[:, None] @ np.swapaxes(goal_frames, -1, -2) + goal_positions[:, None, None]


def alignment_distance(offsets: np.ndarray) -> float:
    """Mean length of one object's (K, 3) keypoint offsets across the z axis (the hole's axis, the
    tray's vertical): how far the object is from lined up over its goal, whatever its height.
    Plain floats: it runs every step."""
    rows = offsets.tolist()
    return sum(math.hypot(x, y) for x, y, _ in rows) / len(rows)


def keypoint_errors(
    positions: np.ndarray, rotations: np.ndarray, keypoints: np.ndarray, goals: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Keypoint offsets to the nearest symmetric goal and the mean keypoint distance, per object.

    positions (N, 3), rotations (N, 3, 3), keypoints (N, K, 3) in each object's frame and
    ``goals`` from ``goal_keypoints``. Returns offsets (N, K, 3) = keypoint minus goal keypoint
    and distances (N,) = mean over keypoints of their length, for the symmetric goal with the
    smallest distance. Small arrays: a handful of numpy calls, no einsum (it is slower here).
    """
    current = keypoints @ np.swapaxes(rotations, -1, -2) + positions[:, None]  # (N, K, 3)
    offsets = current[:, None] - goals  # (N, S, K, 3)
    distances = np.sqrt((offsets * offsets).sum(-1)).mean(-1)  # (N, S)
    if distances.shape[1] == 1:
        return offsets[:, 0], distances[:, 0]
    best = distances.argmin(axis=1)
    rows = np.arange(len(best))
    return offsets[rows, best], distances[rows, best]
