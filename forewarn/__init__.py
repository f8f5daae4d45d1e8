"""Forewarn's ground floor: what every other room needs and nothing else.

Event contracts (``events``), settings, the event lake, logging, the model registry, topic
admin (``kafka.admin``) and a plain publisher (``publish``). It imports nothing else of ours
(tests/forewarn/test_ground_floor.py), so both Python environments (Faust workers and
Airflow) depend on it. The command line, demo and local stack live in ``console/``; the
simulator in ``simulator/``.
"""

__version__ = "0.1.0"

import os

# scikit-learn's OpenMP threads spin while they wait for work. Where processes share the
# cores (Airflow runs tasks side by side, a worker scores beside its broker), the spinning
# threads starve each other: three boosting fits at once on 2 cores took 39 s each with
# the default policy and 3-5 s with PASSIVE (measured 2026-11-29). Every process of ours
# imports this package before scikit-learn; an operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
