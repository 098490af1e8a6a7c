"""PyBullet insertion environments behind the Gymnasium API.

Layout: ``base.py`` (``InsertionEnv``: simulator, robot, delta-pose action, step, state,
rendering) runs a ``task.py`` ``Task`` (scene, start states, observation, reward, success);
``peg_insertion.py`` is the peg-in-hole task, ``packed_objects.py`` the packed-boxes
arrangement task. Shared pieces: ``scene.py`` (body builders), ``keypoints.py`` (keypoint
distances with symmetry), ``rewards.py`` (kernels), ``graph_obs.py`` (named node features,
graph/flat observations), ``robots.py``, ``sim.py``, ``config.py``.

Importing this package registers:

- ``GraphInsertion/PegInsertion-v0``: :class:`envs.peg_insertion.PegInsertionEnv`;
- ``GraphInsertion/PackedObjects-v0``: :class:`envs.packed_objects.PackedObjectsEnv`.

Example::

    import gymnasium as gym
    import envs  # noqa: F401  (registers the ids)

    env = gym.make("GraphInsertion/PegInsertion-v0", robot="floating", obs_mode="flat")
"""

from gymnasium.envs.registration import register, registry

from envs.config import (
    PackedObjectsConfig,
    PegInsertionConfig,
    make_packed_objects_config,
    make_peg_insertion_config,
)

PEG_INSERTION_ID = "GraphInsertion/PegInsertion-v0"
PEG_INSERTION_MAX_STEPS = 100

if PEG_INSERTION_ID not in registry:
    register(
        id=PEG_INSERTION_ID, entry_point="envs.peg_insertion:PegInsertionEnv", max_episode_steps=PEG_INSERTION_MAX_STEPS
    )

PACKED_OBJECTS_ID = "GraphInsertion/PackedObjects-v0"
PACKED_OBJECTS_MAX_STEPS = 200  # pushing the occluders away takes longer than a straight insertion

if PACKED_OBJECTS_ID not in registry:
    register(
        id=PACKED_OBJECTS_ID,
        entry_point="envs.packed_objects:PackedObjectsEnv",
        max_episode_steps=PACKED_OBJECTS_MAX_STEPS,
    )

REGISTERED_IDS = (PEG_INSERTION_ID, PACKED_OBJECTS_ID)

__all__ = [
    "PACKED_OBJECTS_ID",
    "PACKED_OBJECTS_MAX_STEPS",
    "PEG_INSERTION_ID",
    "PEG_INSERTION_MAX_STEPS",
    "REGISTERED_IDS",
    "PackedObjectsConfig",
    "PegInsertionConfig",
    "make_packed_objects_config",
    "make_peg_insertion_config",
]
