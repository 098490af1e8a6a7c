"""Agents: actor-critic models, rollout collection and PPO/TRPO updates.

Import submodules directly (``from agents.ppo import PPO``); this package
imports nothing heavy on purpose.
"""
