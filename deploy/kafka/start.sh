#!/usr/bin/env bash
# The Kafka broker of docker-compose.yml (apache/kafka image), secured: clients authenticate
# with SASL/SCRAM-SHA-512 and may do only what deploy/kafka/init.sh's ACLs allow. The image's
# own start script cannot create the broker's SCRAM user at format time, which SCRAM between
# brokers needs (KIP-900), so this one writes the configuration, formats and starts.
#
# Environment: KAFKA_ADMIN_PASSWORD; optional KAFKA_NUM_PARTITIONS (default 4).
set -euo pipefail

if [[ ! ${KAFKA_ADMIN_PASSWORD:-} =~ ^[A-Za-z0-9_.~-]{16,}$ ]]; then
  echo "kafka: KAFKA_ADMIN_PASSWORD must be at least 16 URL-safe characters (A-Z a-z 0-9 _ . ~ -)" >&2
  exit 1
fi
password="$KAFKA_ADMIN_PASSWORD"
umask 077
config_dir=/tmp/forewarn-kafka
mkdir -p "$config_dir"
config="$config_dir/server.properties"

{
  cat <<EOF
process.roles=broker,controller
node.id=1
# Clients reach CLIENT as kafka:9092 inside the compose network (no host port is published);
# the controller listens on the container's loopback only.
listeners=CLIENT://:9092,CONTROLLER://localhost:9093
advertised.listeners=CLIENT://kafka:9092
controller.quorum.voters=1@localhost:9093
log.dirs=/var/lib/kafka/data
num.partitions=${KAFKA_NUM_PARTITIONS:-4}
# Topics are created by the topics service with their retention and compaction.
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat /forewarn/kafka/security.properties
  echo "listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$password\";"
  echo "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$password\" user_admin=\"$password\";"
} >"$config"

# The healthcheck's client settings (the admin user, on the container's own file system).
cat >"$config_dir/admin.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$password";
EOF

# First start only (--ignore-formatted): a new cluster with the admin user in its metadata.
# "--cluster-id=": an id starting with "-" would otherwise read as an option. Its output goes
# nowhere: it prints the admin's salted SCRAM keys, which do not belong in container logs.
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted \
  --cluster-id="$(/opt/kafka/bin/kafka-storage.sh random-uuid)" --config "$config" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$password]" >/dev/null
exec /opt/kafka/bin/kafka-server-start.sh "$config"
