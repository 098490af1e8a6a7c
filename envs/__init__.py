"""PyBullet insertion environments behind the Gymnasium API.

Layout: ``base.py`` (``InsertionEnv``: simulator, robot, delta-pose action, step, state,
rendering) runs a ``task.py`` ``Task`` (scene, start states, observation, reward, success);
``peg_insertion.py`` is the peg-in-hole task. Shared pieces: ``scene.py`` (body builders),
``keypoints.py`` (keypoint distances with symmetry), ``rewards.py`` (kernels), ``graph_obs.py``
(named node features, graph/flat observations), ``robots.py``, ``sim.py``, ``config.py``.

Importing this package registers:

- ``GraphInsertion/PegInsertion-v0``: :class:`envs.peg_insertion.PegInsertionEnv`.

Example::

    import gymnasium as gym
    import envs  # noqa: F401  (registers the ids)

    env = gym.make("GraphInsertion/PegInsertion-v0", robot="floating", obs_mode="flat")
"""

from gymnasium.envs.registration import register, registry

from envs.config import PegInsertionConfig, make_peg_insertion_config

PEG_INSERTION_ID = "GraphInsertion/PegInsertion-v0"
PEG_INSERTION_MAX_STEPS = 100

if PEG_INSERTION_ID not in registry:
    register(
        id=PEG_INSERTION_ID, entry_point="envs.peg_insertion:PegInsertionEnv", max_episode_steps=PEG_INSERTION_MAX_STEPS
    )

REGISTERED_IDS = (PEG_INSERTION_ID,)

__all__ = ["PEG_INSERTION_ID", "REGISTERED_IDS", "PegInsertionConfig", "make_peg_insertion_config"]
