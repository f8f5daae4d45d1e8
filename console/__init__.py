"""The face on top: the ``forewarn`` command line, the demo and its report, and control of the
local stack (a local Kafka broker, worker and service processes, prerequisite and environment
checks). It may import every room; nothing imports it but tests and benchmarks.

Keep this module free of third-party imports: ``console/prereqs.py`` runs with the bare
system Python before any environment exists.
"""
