"""Scene builders: the bodies tasks are made of (ground, hole, tray, free boxes), as PyBullet multibodies.

Each builder creates one body in a ``Simulator``, registers it under a name and gives it the
simulator's contact properties; the task places it afterwards. Dimensions are metres.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import pybullet

from envs.sim import Simulator

FLOOR_THICKNESS = 0.01
WALL_COLOR = [0.55, 0.6, 0.65, 1.0]
FLOOR_COLOR = [0.35, 0.38, 0.42, 1.0]


def add_ground(sim: Simulator, collides: bool = False) -> int:
    """The ground plane at z = 0, visual only unless ``collides`` (a task with free objects: a box pushed
    out of the tray then lands beside it instead of falling forever)."""
    plane = sim.add_body("plane", sim.client.loadURDF("plane.urdf"))
    if not collides:
        sim.client.setCollisionFilterGroupMask(plane, -1, 0, 0)
    return plane


def add_static_boxes(
    sim: Simulator,
    name: str,
    half_extents: Sequence[Sequence[float]],
    positions: Sequence[Sequence[float]],
    colors: Sequence[Sequence[float]],
    base_position: Sequence[float],
    maximal_coordinates: bool = False,
) -> int:
    """One fixed (mass 0) body made of boxes, each given by half extents and a position in the body frame.

    ``maximal_coordinates`` makes it a plain rigid body instead of a one-link multibody: the same
    geometry, ~13% less physics per packed-objects step (the tray). A fixed body has no contact
    history that could carry over between episodes (see ``add_dynamic_box``).
    """
    client = sim.client
    count = len(half_extents)
    collision = client.createCollisionShapeArray(
        shapeTypes=[pybullet.GEOM_BOX] * count, halfExtents=half_extents, collisionFramePositions=positions
    )
    visual = client.createVisualShapeArray(
        shapeTypes=[pybullet.GEOM_BOX] * count,
        halfExtents=half_extents,
        visualFramePositions=positions,
        rgbaColors=colors,
    )
    body = client.createMultiBody(
        baseMass=0.0,
        baseCollisionShapeIndex=collision,
        baseVisualShapeIndex=visual,
        basePosition=list(base_position),
        useMaximalCoordinates=maximal_coordinates,
    )
    sim.add_body(name, body)
    sim.set_contact_properties(body)
    return body


def hole_boxes(half_width: float, depth: float, wall: float) -> tuple:
    """(half extents, positions) of four walls and a floor around a square opening of half-width
    ``half_width``; the body frame's origin is the centre of the opening's top."""
    outer = half_width + wall
    half_extents: List[List[float]] = [[wall / 2, outer, depth / 2]] * 2 + [[half_width, wall / 2, depth / 2]] * 2
    half_extents += [[outer, outer, FLOOR_THICKNESS / 2]]
    offset = half_width + wall / 2
    positions = [
        [offset, 0, -depth / 2],
        [-offset, 0, -depth / 2],
        [0, offset, -depth / 2],
        [0, -offset, -depth / 2],
        [0, 0, -depth - FLOOR_THICKNESS / 2],
    ]
    return half_extents, positions


def add_hole(sim: Simulator, half_width: float, depth: float, wall: float) -> int:
    """A hole of depth ``depth`` with a floor; see ``hole_boxes``."""
    half_extents, positions = hole_boxes(half_width, depth, wall)
    colors = [WALL_COLOR] * 4 + [FLOOR_COLOR]
    return add_static_boxes(sim, "hole", half_extents, positions, colors, [0.5, 0.0, depth + FLOOR_THICKNESS])


def tray_boxes(half_x: float, half_y: float, wall_height: float, wall: float) -> tuple:
    """(half extents, positions) of a floor and four walls around an inner ``2 half_x`` x ``2 half_y``
    area; the body frame's origin is the centre of the floor's top."""
    outer_x, outer_y = half_x + wall, half_y + wall
    half_extents: List[List[float]] = [[wall / 2, outer_y, wall_height / 2]] * 2
    half_extents += [[half_x, wall / 2, wall_height / 2]] * 2
    half_extents += [[outer_x, outer_y, FLOOR_THICKNESS / 2]]
    positions = [
        [half_x + wall / 2, 0, wall_height / 2],
        [-half_x - wall / 2, 0, wall_height / 2],
        [0, half_y + wall / 2, wall_height / 2],
        [0, -half_y - wall / 2, wall_height / 2],
        [0, 0, -FLOOR_THICKNESS / 2],
    ]
    return half_extents, positions


def add_tray(sim: Simulator, half_x: float, half_y: float, wall_height: float, wall: float) -> int:
    """A tray (floor and four walls) whose floor top is the body origin; see ``tray_boxes``."""
    half_extents, positions = tray_boxes(half_x, half_y, wall_height, wall)
    colors = [WALL_COLOR] * 4 + [FLOOR_COLOR]
    base = [0.5, 0.0, FLOOR_THICKNESS]
    return add_static_boxes(sim, "tray", half_extents, positions, colors, base, maximal_coordinates=True)


def box_shapes(sim: Simulator, half_extents: Sequence[float], color) -> Tuple[int, int]:
    """(collision, visual) shape of a box, for ``add_dynamic_box``: made once, shared by every box built."""
    client = sim.client
    collision = client.createCollisionShape(pybullet.GEOM_BOX, halfExtents=list(half_extents))
    visual = client.createVisualShape(pybullet.GEOM_BOX, halfExtents=list(half_extents), rgbaColor=list(color))
    return collision, visual


def add_dynamic_box(sim: Simulator, name: str, shapes: Tuple[int, int], mass: float, rigid: bool) -> int:
    """A free box of ``mass`` kg with ``box_shapes`` (placed later by the task).

    ``rigid``: a maximal-coordinates rigid body, ~25-30% less physics per packed-objects step than a
    one-link multibody (``False``), but one whose contacts make a seeded episode depend on the
    episodes before it (~1e-16 after one step, which Gymnasium's determinism check catches) unless
    it is built anew for every episode (``envs.packed_objects``'s ``rigid_boxes`` does).
    """
    collision, visual = shapes
    body = sim.client.createMultiBody(
        baseMass=mass,
        baseCollisionShapeIndex=collision,
        baseVisualShapeIndex=visual,
        basePosition=[0.5, 0.0, 0.1],
        useMaximalCoordinates=rigid,
    )
    sim.add_body(name, body)
    sim.set_contact_properties(body)
    return body
