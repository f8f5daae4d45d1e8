"""Great Expectations suites (JSON beside this file, reviewed like code) and the helper that
runs a checkpoint on a DataFrame from a plain Airflow task. Built by issue 4."""
