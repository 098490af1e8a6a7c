"""A non-learned push-then-insert controller for the packed-objects task, and the straight descent it beats.

It proves the task is solvable and serves as a baseline. Like ``envs.scripted``, it reads the state
through ``get_start_state`` (tray-frame poses) and the goal arrangement through the task's
``goal_poses``, and returns delta-pose actions, so it works with either robot.

Why the held box tilts to push: the boxes are equally wide, so the free space between an occluder
pushed into the slot and the slot's other neighbour is narrower than the held box, and an upright
held box cannot come down behind the occluder. Tilted by ``tilt`` about the horizontal axis across
the push direction, leaning toward the occluder, its leading bottom edge drops ``push_depth`` below
the occluder's top into that space while its bottom face rises back over the other neighbour. Its
leaning face then bears on the occluder's top edge and pushes it back (and slightly down, which
keeps it sliding rather than tipping); the flat face also turns a yawed occluder square again.

The bottom face clears the other neighbour's top edge when (g - d tan t - b) tan t >= d, with g the
free space, d the depth, t the tilt and b the ``approach_gap`` left before the push starts. The
defaults (15 deg, 2.5 mm, 2 mm) keep that true at the default config's narrowest space (g = 13.7 mm:
a 3 cm shift of a fully yawed occluder) with 0.5 mm to spare. Steeper tilts leave more room but,
leaning toward the arm, bring the Panda's wrist near a singularity (at 35 deg it flails on some seeds).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from envs.geometry import euler_to_matrix

QUARTER_TURN = np.pi / 2
UP = np.array([0.0, 0.0, 1.0])


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix of ``angle`` radians about the unit vector ``axis`` (Rodrigues)."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * k @ k


def yaw_matrix(yaw: float) -> np.ndarray:
    return euler_to_matrix(0.0, 0.0, yaw)


def nearest_quarter_turn(yaw: float, reference: float) -> float:
    """The yaw equal to ``reference`` modulo a quarter turn that is nearest to ``yaw`` (square boxes)."""
    return yaw + (reference - yaw + QUARTER_TURN / 2) % QUARTER_TURN - QUARTER_TURN / 2


def rotation_angle(matrix: np.ndarray) -> float:
    """Angle (radians) of a rotation matrix."""
    return float(np.arccos(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0)))


def rotation_vector_of(matrix: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (angle below pi)."""
    angle = rotation_angle(matrix)
    if angle < 1e-9:
        return np.zeros(3)
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    return axis * angle / (2.0 * np.sin(angle))


class HeldBox:
    """The held box's pose in the tray frame: centre, rotation, and the points the controller steers."""

    def __init__(self, held_pose, slot_xy: np.ndarray, half: float, height: float):
        x, y, z, roll, pitch, yaw = held_pose
        self.rotation = euler_to_matrix(roll, pitch, yaw)
        self.yaw = np.arctan2(self.rotation[1, 0], self.rotation[0, 0])  # heading of its x side, tilted or not
        self.half, self.height = half, height
        self.bottom = np.array([slot_xy[0] + x, slot_xy[1] + y, z])
        self.centre = self.bottom + self.rotation[:, 2] * height / 2

    def lowest_z(self) -> float:
        """Height of the lowest corner above the tray floor (each half extent along the box's axes adds its drop)."""
        half_extents = np.array([self.half, self.half, self.height / 2])
        return float(self.centre[2] - np.abs(self.rotation[2]) @ half_extents)

    def leading_edge(self, direction: np.ndarray) -> np.ndarray:
        """Middle of the bottom edge furthest along ``direction`` (the edge that goes behind an occluder)."""
        sides = self.rotation[:, :2]
        along = sides.T @ direction
        j = int(np.argmax(np.abs(along)))
        return self.bottom + self.half * np.sign(along[j]) * sides[:, j]


class ScriptedPackingPolicy:
    """Push every displaced neighbour of the slot back with the tilted held box, then insert it upright.

    Each call decides from the current state alone. While a neighbour of the slot is more than
    ``push_threshold`` short of its goal along its push direction (slot -> goal), push it there
    from the slot side; while one is more than ``side_threshold`` off its goal sideways, push it
    sideways from the tray-wall side (the walls are lower than the boxes, so the tilted box leans
    over them). Then go above the slot, straighten, align yaw and descend. Between targets the box
    first rises clear of the packed boxes when it is low.
    """

    def __init__(
        self,
        env,
        tilt: float = np.radians(15.0),
        push_depth: float = 0.0025,
        push_threshold: float = 0.0015,
        side_threshold: float = 0.003,
        approach_gap: float = 0.002,
        push_overshoot: float = 0.0005,
        max_push_step: float = 0.003,
        gain: float = 0.5,
    ):
        self.env = env.unwrapped
        cfg = self.env.config
        self.tilt, self.push_depth, self.gain = tilt, push_depth, gain
        self.push_threshold, self.side_threshold = push_threshold, side_threshold
        self.approach_gap, self.push_overshoot, self.max_push_step = approach_gap, push_overshoot, max_push_step
        self.half, self.height, self.top = cfg.box_half_size, cfg.held_box_height, cfg.box_height
        goals = self.env.task.goal_poses()
        self.slot = np.asarray(goals["slot"])
        self.goals = np.asarray(goals["object_poses"])[:, :2]
        # Reset pushes the slot's grid neighbours toward it: each goes back along slot -> goal.
        offsets = self.goals - self.slot
        distances = np.linalg.norm(offsets, axis=1)
        pitch = 2 * cfg.box_half_size + cfg.gap
        self.directions = {
            i: np.array([*(offsets[i] / distances[i]), 0.0]) for i in range(len(offsets)) if distances[i] < 1.01 * pitch
        }
        self.transit_z = self.top + 0.05  # centre height that clears every packed box in any orientation
        self.clear_z = self.top + 0.008  # lowest corner above this: free to move sideways
        self.slow_rise = 0.004  # metres per step of the target while the box rises from among the packed boxes

    def __call__(self, observation=None) -> np.ndarray:
        state = self.env.get_start_state()
        held = HeldBox(state["held_pose"], self.slot, self.half, self.height)
        boxes = np.asarray(state["object_poses"])
        push = self._next_push(boxes)
        if push is None:
            centre, rotation = self._insert_target(held)
        else:
            i, direction = push
            centre, rotation = self._push_target(held, boxes[i], self.goals[i], direction)
        return self._action(held, centre, rotation)

    # ------------------------------------------------------------------ which box, which way
    def _next_push(self, boxes: np.ndarray) -> Optional[tuple]:
        """(packed-box index, unit push direction) of the next push, or None when every neighbour is in place."""
        for i, u in self.directions.items():
            if (self.goals[i] - boxes[i, :2]) @ u[:2] > self.push_threshold:
                return i, u
        for i, u in self.directions.items():
            side = np.cross(UP, u)
            off = (self.goals[i] - boxes[i, :2]) @ side[:2]
            if abs(off) > self.side_threshold:
                return i, np.sign(off) * side
        return None

    # ------------------------------------------------------------------ targets (centre, rotation)
    def _push_target(self, held: HeldBox, box: np.ndarray, goal_xy: np.ndarray, u: np.ndarray):
        """Drop the tilted box's leading edge just short of ``box``'s near face (along ``u``), then push along ``u``."""
        yaw = nearest_quarter_turn(held.yaw, np.arctan2(u[1], u[0]))
        rotation = rotation_about(np.cross(UP, u), self.tilt) @ yaw_matrix(yaw)  # leaning toward u
        box_centre = np.array([box[0], box[1], 0.0])
        reach = self.half * (abs(np.cos(box[2] - yaw)) + abs(np.sin(box[2] - yaw)))  # a yawed square reaches further
        face = box_centre @ u - reach
        goal = np.array([*goal_xy, 0.0])
        edge = held.leading_edge(u)
        engaged = (  # tilted, on the push line, below the box's top and just short of its near face
            rotation_angle(rotation @ held.rotation.T) < np.radians(5.0)
            and abs((edge - goal) @ np.cross(UP, u)) < 0.003
            and edge[2] < self.top + 0.0005
            and face - 0.01 < edge @ u < face
        )
        if engaged:  # behind the box, below its top: push until it is at its goal (closed loop on its position)
            short = (goal_xy - box[:2]) @ u[:2] + self.push_overshoot
            along = edge @ u + np.clip(self.gain * short, 0.0, self.max_push_step)
        else:  # come down with the leaning face just short of the box's top edge
            along = face - self.push_depth * np.tan(self.tilt) - self.approach_gap
        edge_target = goal + (along - goal @ u) * u + UP * (self.top - self.push_depth)  # on the goal's line along u
        centre = edge_target - self._edge_offset(rotation, u)
        hover = centre + UP * (self.push_depth + 0.003)
        return self._approach(held, centre, hover, rotation, descend=engaged)

    def _insert_target(self, held: HeldBox):
        rotation = yaw_matrix(nearest_quarter_turn(held.yaw, 0.0))
        seated = np.array([*self.slot, self.height / 2 - 0.005])  # press slightly past the floor
        hover = np.array([*self.slot, self.top + 0.005 + self.height / 2])
        return self._approach(held, seated, hover, rotation)

    def _edge_offset(self, rotation: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Leading bottom edge minus centre of the held box at ``rotation`` (its bottom edge furthest along ``u``)."""
        sides = rotation[:, :2]
        along = sides.T @ u
        j = int(np.argmax(np.abs(along)))
        return self.half * np.sign(along[j]) * sides[:, j] - rotation[:, 2] * self.height / 2

    def _approach(self, held: HeldBox, goal: np.ndarray, hover: np.ndarray, rotation, descend: bool = False):
        """(Centre, rotation) target on the way to ``goal``: over the packed boxes, to ``hover`` above it, then down.

        Far from ``goal`` sideways, a low box first rises straight up without turning (turning about
        its centre would swing its corners into the boxes), then travels at ``transit_z``; once over
        ``hover`` and turned to ``rotation`` (or when ``descend``), it goes down to ``goal``.
        """
        lateral = np.linalg.norm(held.centre[:2] - goal[:2])
        turned = rotation_angle(rotation @ held.rotation.T)
        if descend or (lateral < 0.001 and turned < np.radians(2.0)):
            return goal, rotation
        if lateral < 0.004 and turned < np.radians(5.0):  # over it: line up at the current height (no lower)
            return np.array([*hover[:2], max(min(held.centre[2], self.transit_z), hover[2])]), rotation
        if held.lowest_z() < self.clear_z:  # slowly: a quick lift jerks the Panda's hand sideways
            return np.array([*held.centre[:2], min(held.centre[2] + self.slow_rise, self.transit_z)]), held.rotation
        return np.array([*hover[:2], max(self.transit_z, hover[2])]), rotation

    # ------------------------------------------------------------------ action
    def _action(self, held: HeldBox, centre: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """Proportional step toward the target pose, as a delta-pose action (tray frame)."""
        cfg = self.env.config
        translation = self.gain * (centre - held.centre) / cfg.max_translation
        turn = rotation_vector_of(rotation @ held.rotation.T)  # from the current orientation to the target
        action = np.concatenate([translation, self.gain * turn / cfg.max_rotation])
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class StraightDescentPolicy(ScriptedPackingPolicy):
    """The baseline without pushing: above the slot, align yaw, descend (an occluder blocks it)."""

    def _next_push(self, boxes: np.ndarray) -> Optional[tuple]:
        return None
