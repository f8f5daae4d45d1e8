"""Nightly models: churn features, training and scoring, customer lifetime value, registry.

Plain Python and scikit-learn, no Kafka and no Airflow, with estimator-style APIs (``fit``,
``predict``). Built by issue 4; the DAGs in ``dags/`` only wire these functions.
"""
