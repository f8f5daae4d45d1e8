#!/usr/bin/env bash
# Kafka users and ACLs of docker-compose.yml's broker: the `kafka-init` service runs this after
# the broker is healthy, on every `docker compose up` (so a changed password in .env applies).
# tests/integration/test_kafka_auth.py runs this same script against a local secured broker.
# docs/operations.md ("Kafka authentication") says who may do what and how to add a producer.
#
# Environment: KAFKA_BOOTSTRAP (host:port), KAFKA_ADMIN_PASSWORD, KAFKA_WORKER_PASSWORD,
# KAFKA_AIRFLOW_PASSWORD, KAFKA_PRODUCER_PASSWORD; optional FOREWARN_GROUP_ID (the workers'
# consumer group and the prefix of their Faust topics, default forewarn) and KAFKA_BIN.
set -euo pipefail

bin="${KAFKA_BIN:-/opt/kafka/bin}"
bootstrap="${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP to the broker, e.g. kafka:9092}"
group="${FOREWARN_GROUP_ID:-forewarn}"

for name in KAFKA_ADMIN_PASSWORD KAFKA_WORKER_PASSWORD KAFKA_AIRFLOW_PASSWORD KAFKA_PRODUCER_PASSWORD; do
  value="${!name:-}"
  # Passwords go into JAAS strings and SCRAM config values, where quotes, commas and '='
  # would change their meaning: URL-safe characters only (secrets.token_urlsafe makes them).
  if [[ ! $value =~ ^[A-Za-z0-9_.~-]{16,}$ ]]; then
    echo "kafka-init: $name must be at least 16 URL-safe characters (A-Z a-z 0-9 _ . ~ -);" \
      "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'" >&2
    exit 1
  fi
done

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The admin user (the broker's own, a super user) makes the other users and grants the ACLs.
cat >"$work/admin.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
EOF

user() { # name password: create the user, or change its password
  # On the command line: kafka-configs reads no SCRAM credential from --add-config-file. It is
  # seen only inside this one-shot container, and only the salted hash is stored.
  "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$work/admin.properties" \
    --alter --entity-type users --entity-name "$1" --add-config "SCRAM-SHA-512=[password=$2]"
}

allow() { # user, then kafka-acls resource and operation options
  "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$work/admin.properties" \
    --add --allow-principal "User:$1" "${@:2}"
}

user worker "$KAFKA_WORKER_PASSWORD"
user airflow "$KAFKA_AIRFLOW_PASSWORD"
user producer "$KAFKA_PRODUCER_PASSWORD"

# Workers: read the sources and what they join with, write what they derive. Only workers and
# Airflow may write alerts, model-updates and customer-values (issue 13: anyone who could write
# to Kafka could publish a model update or an alert).
allow worker --operation Read --operation Describe \
  --topic device-telemetry --topic orders --topic tickets --topic customer-values --topic model-updates \
  --topic customers --topic maintenance
allow worker --operation Read --operation Write --operation Describe \
  --topic alerts --topic customer-signals
allow worker --operation Write --operation Describe --topic outreach-tasks --topic dead-letters
# Faust's own topics (table changelogs, the assignor's leader topic) are named "<group>-...".
allow worker --resource-pattern-type prefixed --topic "$group-" --operation Create \
  --operation Read --operation Write --operation Describe --operation DescribeConfigs
allow worker --group "$group" --operation Read --operation Describe

# Airflow's nightly publishes the champion model and customer values; it reads the lake, not Kafka.
allow airflow --operation Write --operation Describe --topic model-updates --topic customer-values

# Producers (devices, shop, ticketing, the CRM and field-service system through `forewarn
# import`, the simulator): the source topics, nothing else.
allow producer --operation Write --operation Describe --topic device-telemetry --topic orders --topic tickets \
  --topic customers --topic maintenance

echo "kafka-init: users worker, airflow, producer and their ACLs are in place"
