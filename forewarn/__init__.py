"""Forewarn's shared core: settings, event contracts, the event lake, the simulator, the CLI.

This package imports nothing else of ours, so both Python environments (Faust workers and
Airflow) can depend on it. Keep this module free of third-party imports: ``forewarn.prereqs``
runs with the bare system Python before any environment exists.
"""

__version__ = "0.1.0"
