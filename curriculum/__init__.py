"""Curricula that choose episode start states, as trainer plugins (``agents.trainer.TrainerPlugin``).

- ``curriculum=none``: every episode starts from the task's own start distribution.
- ``curriculum=adaptive`` (``curriculum/adaptive.py``): a scalar difficulty, starts near the goal
  moved outward while the policy succeeds (the env's ``start_at_difficulty``; both tasks have one).
- ``curriculum=reverse`` (``curriculum/reverse.py``): reverse curriculum generation, starts grown
  backward from the goal by random walks and kept while their success rate is intermediate.
- ``curriculum=demo`` (``curriculum/demo.py``): starts along the env's scripted demonstrations,
  from their solved end back to their first state, on the adaptive schedule.

Starts reach the env workers through ``agents/start_states.py``, at every reset.
"""
