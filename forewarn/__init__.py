"""Forewarn's ground floor: what every other room needs and nothing else.

Event contracts (``events``), settings, the event lake, logging, the model registry, topic
admin (``kafka.admin``) and a plain publisher (``publish``). It imports nothing else of ours
(tests/forewarn/test_ground_floor.py), so both Python environments (Faust workers and
Airflow) depend on it. The command line, demo and local stack live in ``console/``; the
simulator in ``simulator/``.
"""

__version__ = "0.1.0"
