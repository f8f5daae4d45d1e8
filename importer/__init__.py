"""A producer beside the simulator: a team's own files mapped onto Forewarn's contracts.

``forewarn import telemetry|orders|tickets FILE --map mapping.yaml --to lake|kafka`` backfills
or streams a history (:mod:`importer.events`); ``forewarn import customers FILE --map ...``
loads a CRM export as customer records (:mod:`importer.customers`). The mapping files are
YAML (:mod:`importer.mapping`, docs/import.md); rows that do not map are reported with the
file, line, column and reason, never half-imported.
"""
