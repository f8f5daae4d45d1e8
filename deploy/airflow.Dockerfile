# Airflow 3.3 with Forewarn's nightly DAG, its plugin and the project's packages.
# Build from the repository root: docker build -f deploy/airflow.Dockerfile -t forewarn-airflow .
# Follows the official image's "extend the image" recipe: pin apache-airflow to the image's
# own version so pip cannot swap it while installing the locked environment.
FROM apache/airflow:3.3.2
ENV FOREWARN_HOME=/data FOREWARN_LOG_FORMAT=json
COPY requirements/airflow.lock /opt/forewarn/requirements/airflow.lock
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
    -r /opt/forewarn/requirements/airflow.lock
COPY --chown=airflow:0 pyproject.toml README.md /opt/forewarn/
COPY --chown=airflow:0 forewarn /opt/forewarn/forewarn
COPY --chown=airflow:0 models /opt/forewarn/models
COPY --chown=airflow:0 expectations /opt/forewarn/expectations
COPY --chown=airflow:0 outreach /opt/forewarn/outreach
COPY --chown=airflow:0 streams /opt/forewarn/streams
RUN pip install --no-cache-dir --no-deps -e /opt/forewarn
COPY dags /opt/airflow/dags
COPY plugins /opt/airflow/plugins
USER root
RUN mkdir -p /data /opt/airflow/auth && chown 50000:0 /data /opt/airflow/auth \
    && chmod 775 /data /opt/airflow/auth
USER airflow
