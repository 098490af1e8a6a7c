"""Curricula that choose episode start states, as trainer plugins (``agents.trainer.TrainerPlugin``).

- ``curriculum=none``: every episode starts from the task's own start distribution.
- ``curriculum=adaptive`` (``curriculum/adaptive.py``): a scalar difficulty, starts near the goal
  moved outward while the policy succeeds (the env's ``start_at_difficulty``; peg insertion has one).

Starts reach the env workers through ``agents/start_states.py``, at every reset.
"""
