#!/usr/bin/env bash
# devstack.sh: a throwaway PostgreSQL + Apache Kafka (KRaft) stack on loopback, for tests,
# benchmarks and the demo. Everything lives in $REPO/.stack (git-ignored), so two clones of the
# repo run two independent stacks and `down` in one never touches the other.
#
#   scripts/devstack.sh up       start what is not running (idempotent), write .stack/env
#   scripts/devstack.sh up pg|kafka   start that server again if it is down, on its ports
#   scripts/devstack.sh down     stop both and delete .stack
#   scripts/devstack.sh status   say what runs where
#   scripts/devstack.sh env      print .stack/env (eval "$(scripts/devstack.sh env)")
#
# The broker has three client listeners on loopback: PLAINTEXT (KAFKA_BROKERS), SASL_SSL with
# SCRAM-SHA-512 (KAFKA_SASL_SSL_BROKERS) and mutual TLS, client certificate required
# (KAFKA_MTLS_BROKERS). Their test CA and certificates are made once per stack by
# internal/devcerts (Go) under .stack/kafka/tls, never checked in, and the SCRAM user and its
# random password are made when the storage is formatted; .stack/env names them all
# (KAFKA_TEST_*). A broker started by an older devstack.sh, without those listeners, is
# restarted with them by `up`.
#
# DEVSTACK_DIR, when set, is the stack's directory instead of $REPO/.stack: the chaos suite
# (make chaos) starts a stack of its own there, whose PostgreSQL and broker it may kill, without
# touching the one `make test` shares; with DEVSTACK_KEEP_PORTS=1 a restart keeps the ports.
#
# If DATABASE_URL or KAFKA_BROKERS is already set (and is not the value this stack wrote), that
# part is not started: the given value is written to .stack/env as is.
#
# On a fresh machine `up` installs what is missing: Debian's postgresql (apt) and the Kafka jars
# (Maven Central, via build/kafka/pom.xml, cached in ~/.cache/reversald, outside the repo).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
STACK="${DEVSTACK_DIR:-$REPO/.stack}"
ENV_FILE="$STACK/env"
PG_DIR="$STACK/pg"
KAFKA_DIR="$STACK/kafka"
KAFKA_POM="$REPO/build/kafka/pom.xml"
TLS_DIR="$KAFKA_DIR/tls"
SCRAM_USER=reversald
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/reversald"

log() { printf 'devstack: %s\n' "$*" >&2; }
die() { printf 'devstack: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# helpers

is_root() { [ "$(id -u)" -eq 0 ]; }

# port_in_use PORT: true if something listens on 127.0.0.1:PORT (or any address).
port_in_use() {
  local p=$1
  if ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; then return 0; fi
  # ss missing or odd: fall back to a connect attempt.
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
  return 1
}

# free_port [EXCLUDE...]: print a free loopback port from a random high range. Random, not
# sequential, so that two stacks starting at once (two clones, CI + a developer) rarely collide.
free_port() {
  local p i x skip
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
    skip=0
    for x in "$@"; do [ "$x" = "$p" ] && skip=1; done
    [ "$skip" = 1 ] && continue
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free loopback port found"
}

# keep_ports: DEVSTACK_KEEP_PORTS=1 makes a failed start retry on the same ports instead of
# others, once the server has run on them (its port file is written after a start): the chaos
# suite restarts a killed server under clients that know its port.
keep_ports() { [ "${DEVSTACK_KEEP_PORTS:-}" = 1 ] && [ -s "$1" ]; }

# wait_tcp PORT SECONDS: wait until 127.0.0.1:PORT accepts connections.
wait_tcp() {
  local p=$1 deadline=$(( SECONDS + $2 ))
  while [ "$SECONDS" -lt "$deadline" ]; do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# pid_alive PIDFILE PATTERN: the pid in PIDFILE runs and its command line contains PATTERN
# (guards against a stale pid file whose pid was reused by an unrelated process).
pid_alive() {
  local f=$1 pat=$2 pid
  [ -s "$f" ] || return 1
  pid=$(head -n1 "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pat"
}

# The value this stack last wrote for a variable, if any (to tell our own exported value from
# one the caller set on purpose).
own_value() {
  [ -f "$ENV_FILE" ] || return 0
  sed -n "s/^export $1=//p" "$ENV_FILE" | tail -n1
}

# external VAR: true if VAR is set in the environment by someone else than this stack.
external() {
  local name=$1 val
  val=${!name:-}
  [ -n "$val" ] || return 1
  # Exported by an earlier `. .stack/env` of this very stack: ours, manage it.
  [ "$val" = "$(own_value "$name")" ] && return 1
  return 0
}

apt_install() {
  is_root || { command -v sudo >/dev/null || die "need root to apt-get install $*"; }
  local sudo=""
  is_root || sudo="sudo"
  log "installing $* (apt)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    apt_install postgresql >&2
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
  fi
  echo "$d"
}

# The unprivileged user PostgreSQL runs as: initdb and postgres refuse to run as root.
PG_USER=""
pg_user() {
  if ! is_root; then PG_USER=$(id -un); return; fi
  if id postgres >/dev/null 2>&1; then PG_USER=postgres; return; fi
  if ! id reversald >/dev/null 2>&1; then
    log "creating system user reversald to run PostgreSQL"
    useradd --system --no-create-home --shell /usr/sbin/nologin reversald
  fi
  PG_USER=reversald
}

as_pg() {
  if is_root; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

# Make every ancestor of .stack traversable by the PostgreSQL user (a repo under /root, say).
ensure_traversable() {
  is_root || return 0
  local d=$1
  while [ "$d" != "/" ]; do
    if ! runuser -u "$PG_USER" -- test -x "$d" 2>/dev/null; then
      log "chmod o+x $d (so $PG_USER can reach .stack)"
      chmod o+x "$d"
    fi
    d=$(dirname "$d")
  done
}

pg_running() {
  local bin=$1
  [ -s "$PG_DIR/port" ] || return 1
  pid_alive "$PG_DIR/data/postmaster.pid" "$PG_DIR/data" || return 1
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$(cat "$PG_DIR/port")" -U postgres
}

# pg_clear_stale: make sure no server of this stack holds the data dir before a start: stop
# one that runs but does not answer, wait for a killed one to be gone (a zombie not reaped yet
# still "exists" for PostgreSQL's own check), then drop its stale postmaster.pid.
pg_clear_stale() {
  local bin=$1 f="$PG_DIR/data/postmaster.pid" pid i
  [ -s "$f" ] || return 0
  pid=$(head -n1 "$f")
  if pid_alive "$f" "$PG_DIR/data"; then
    log "PostgreSQL: a server of this stack (pid $pid) runs but does not answer; stopping it"
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
  fi
  for i in $(seq 1 50); do
    [ -d "/proc/$pid" ] || break
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
    sleep 0.2
  done
  if [ -s "$f" ] && ! pid_alive "$f" "$PG_DIR/data"; then
    log "PostgreSQL: removing stale postmaster.pid (pid $pid is gone)"
    rm -f "$f"
  fi
}

pg_up() {
  if [ "$PG_EXTERNAL" = 1 ]; then
    log "PostgreSQL: DATABASE_URL is set, using it (not starting one)"
    PG_URL=$DATABASE_URL
    return
  fi
  local bin
  bin=$(pg_bindir)
  pg_user
  if pg_running "$bin"; then
    log "PostgreSQL: already running on 127.0.0.1:$(cat "$PG_DIR/port")"
  else
    mkdir -p "$PG_DIR/run"
    ensure_traversable "$STACK"
    if [ ! -s "$PG_DIR/data/PG_VERSION" ]; then
      rm -rf "$PG_DIR/data"
      mkdir -p "$PG_DIR/data"
      is_root && chown -R "$PG_USER:" "$PG_DIR"
      chmod 700 "$PG_DIR/data"
      log "PostgreSQL: initdb ($bin, as $PG_USER)"
      as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
      # THROWAWAY cluster for tests: durability is switched off on purpose (fsync, synchronous
      # commit and full-page writes), trading crash safety for speed. Never copy these settings
      # to a real database.
      cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# --- added by scripts/devstack.sh: throwaway test cluster, NOT crash safe ---
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 256MB
log_min_messages = warning
log_min_duration_statement = -1
EOF
    fi
    is_root && chown -R "$PG_USER:" "$PG_DIR"
    pg_clear_stale "$bin"
    local port tries=0
    port=$(cat "$PG_DIR/port" 2>/dev/null || true)
    while :; do
      # Reuse the previous port when free (stable env), otherwise take another one.
      if [ -z "$port" ] || port_in_use "$port"; then port=$(free_port); fi
      log "PostgreSQL: starting on 127.0.0.1:$port"
      # pg_ctl copes with a stale postmaster.pid left by a killed run.
      if as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
          -o "-p $port -k $PG_DIR/run -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements" start >/dev/null 9>&-; then
        break
      fi
      tries=$((tries + 1))
      [ "$tries" -lt 3 ] || { tail -n 30 "$PG_DIR/postgres.log" >&2 || true; die "PostgreSQL did not start"; }
      log "PostgreSQL: start failed, retrying on another port"
      sleep 1
      pg_clear_stale "$bin"
      keep_ports "$PG_DIR/port" || port=""
    done
    echo "$port" >"$PG_DIR/port"
    local deadline=$(( SECONDS + 60 ))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; do
      [ "$SECONDS" -lt "$deadline" ] || die "PostgreSQL: pg_isready never succeeded (see $PG_DIR/postgres.log)"
      sleep 0.2
    done
    head -n1 "$PG_DIR/data/postmaster.pid" >"$PG_DIR/pid"
    log "PostgreSQL: ready on 127.0.0.1:$port (pid $(cat "$PG_DIR/pid"))"
  fi
  PG_URL="postgres://postgres@127.0.0.1:$(cat "$PG_DIR/port")/postgres?sslmode=disable"
}

pg_down() {
  [ -d "$PG_DIR/data" ] || return 0
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if pid_alive "$PG_DIR/data/postmaster.pid" "$PG_DIR/data"; then
    log "PostgreSQL: stopping"
    pg_user
    if [ -n "$bin" ]; then
      as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    if pid_alive "$PG_DIR/data/postmaster.pid" "$PG_DIR/data"; then
      kill -9 "$(head -n1 "$PG_DIR/data/postmaster.pid")" 2>/dev/null || true
    fi
  fi
}

pg_status() {
  if [ -s "$PG_DIR/port" ] && pid_alive "$PG_DIR/data/postmaster.pid" "$PG_DIR/data"; then
    echo "postgres: running, 127.0.0.1:$(cat "$PG_DIR/port"), pid $(head -n1 "$PG_DIR/data/postmaster.pid"), data $PG_DIR/data"
  else
    echo "postgres: not running"
  fi
}

# ---------------------------------------------------------------------------------------------
# Kafka (KRaft, combined broker+controller, one node), jars assembled from Maven Central

kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n1
}

# java_bin: a java of version 17 or later (Kafka 4.x needs 17+); installs Debian's if none.
java_bin() {
  local j major
  for j in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/*/bin/java; do
    [ -n "$j" ] && [ -x "$j" ] || continue
    major=$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1)
    if [ -n "$major" ] && [ "$major" -ge 17 ]; then echo "$j"; return; fi
  done
  apt_install openjdk-17-jre-headless >&2
  ls /usr/lib/jvm/java-17-openjdk-*/bin/java | head -n1
}

# kafka_libs: print the directory holding the broker's jars, downloading them on first use.
# The cache is keyed by version and by the pom's hash (a changed pom re-resolves), and lives
# outside the repo: jars are never committed.
kafka_libs() {
  local ver dir stamp
  ver=$(kafka_version)
  [ -n "$ver" ] || die "no <kafka.version> in $KAFKA_POM"
  dir="$CACHE_ROOT/kafka-$ver"
  stamp=$(sha256sum "$KAFKA_POM" | cut -c1-16)
  if [ "$(cat "$dir/.complete" 2>/dev/null || true)" = "$stamp" ] && ls "$dir/libs/"kafka_2.13-*.jar >/dev/null 2>&1; then
    echo "$dir/libs"; return
  fi
  command -v mvn >/dev/null || apt_install maven >&2
  log "Kafka: fetching Apache Kafka $ver jars from Maven Central into $dir/libs (once)"
  mkdir -p "$dir"
  rm -rf "$dir/libs.tmp"
  if ! mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$dir/libs.tmp" >"$dir/mvn.log" 2>&1; then
    cat "$dir/mvn.log" >&2
    die "Kafka: Maven could not assemble kafka $ver (log above, also in $dir/mvn.log)"
  fi
  rm -rf "$dir/libs"
  mv "$dir/libs.tmp" "$dir/libs"
  echo "$stamp" >"$dir/.complete"
  echo "$dir/libs"
}

kafka_running() {
  [ -s "$KAFKA_DIR/port" ] || return 1
  pid_alive "$KAFKA_DIR/pid" "$KAFKA_DIR/server.properties" || return 1
  kafka_current || return 1
  wait_tcp "$(cat "$KAFKA_DIR/port")" 2 && wait_tcp "$(cat "$KAFKA_DIR/sasl_ssl.port")" 2 && wait_tcp "$(cat "$KAFKA_DIR/mtls.port")" 2
}

# kafka_current: the broker's config has the security listeners, and their ports, certificates
# and SCRAM user are on record (a broker started by an older devstack.sh has none of them).
kafka_current() {
  grep -q '^listeners=.*SASL_SSL://.*MTLS://' "$KAFKA_DIR/server.properties" 2>/dev/null &&
    [ -s "$KAFKA_DIR/sasl_ssl.port" ] && [ -s "$KAFKA_DIR/mtls.port" ] &&
    [ -s "$TLS_DIR/.complete" ] && [ -s "$KAFKA_DIR/scram.user" ]
}

# kafka_certs: the test CA, broker and client certificates (internal/devcerts), once per stack.
kafka_certs() {
  [ -s "$TLS_DIR/.complete" ] && return 0
  local go=${GO:-go}
  command -v "$go" >/dev/null || die "Kafka: $go is not on PATH; it is needed once to make the test certificates (internal/devcerts)"
  log "Kafka: making the test CA and certificates in $TLS_DIR"
  rm -rf "$TLS_DIR"
  (cd "$REPO" && "$go" run ./internal/devcerts -dir "$TLS_DIR") || die "Kafka: internal/devcerts could not make the test certificates"
  date -u +%FT%TZ >"$TLS_DIR/.complete"
}

# scram_password: this stack's SCRAM password, made once (random, letters and digits only).
scram_password() {
  if [ ! -s "$KAFKA_DIR/scram.password" ]; then
    (umask 077; head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 >"$KAFKA_DIR/scram.password")
  fi
  cat "$KAFKA_DIR/scram.password"
}

kafka_write_config() {
  local port=$1 cport=$2 sport=$3 mport=$4
  cat >"$KAFKA_DIR/server.properties" <<EOF
# written by scripts/devstack.sh: single-node KRaft (broker + controller) for tests only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport,MTLS://127.0.0.1:$mport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport,MTLS://127.0.0.1:$mport
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
# Security listeners for the TLS and SASL tests. No authorizer: an authenticated client may do
# anything. TLS from PEM files made by internal/devcerts (test CA, never checked in).
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
# SASL_SSL: SCRAM-SHA-512 only, server-authenticated TLS (no client certificate).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.client.auth=none
# MTLS: TLS with a client certificate of the test CA required.
listener.name.mtls.ssl.client.auth=required
log.dirs=$KAFKA_DIR/data
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Smaller internal topics than the defaults (50 partitions): faster first group join in tests.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=4
# Lets tests use short consumer-group session timeouts (rebalance tests) without waiting 6 s+.
group.min.session.timeout.ms=1000
EOF
  cat >"$KAFKA_DIR/log4j2.properties" <<EOF
status = warn
appender.f.type = RollingFile
appender.f.name = F
appender.f.fileName = $KAFKA_DIR/server.log
appender.f.filePattern = $KAFKA_DIR/server.log.%i
appender.f.layout.type = PatternLayout
appender.f.layout.pattern = [%d] %p %m (%c)%n
appender.f.policies.type = Policies
appender.f.policies.size.type = SizeBasedTriggeringPolicy
appender.f.policies.size.size = 50MB
appender.f.strategy.type = DefaultRolloverStrategy
appender.f.strategy.max = 2
rootLogger.level = info
rootLogger.appenderRef.f.ref = F
logger.ak.name = org.apache.kafka
logger.ak.level = warn
EOF
  cat >"$KAFKA_DIR/log4j2-cli.properties" <<EOF
status = warn
appender.e.type = Console
appender.e.name = E
appender.e.target = SYSTEM_ERR
appender.e.layout.type = PatternLayout
appender.e.layout.pattern = %p %m%n
rootLogger.level = warn
rootLogger.appenderRef.e.ref = E
EOF
}

# kafka_start PORT CPORT SPORT MPORT: start the broker in the background; 0 once it serves on
# every listener, 1 if it died.
kafka_start() {
  local port=$1 cport=$2 sport=$3 mport=$4 deadline pid cid
  kafka_write_config "$port" "$cport" "$sport" "$mport"
  if [ ! -s "$KAFKA_DIR/data/meta.properties" ]; then
    rm -rf "$KAFKA_DIR/data" "$KAFKA_DIR/scram.user"
    # A Kafka cluster id is 16 random bytes, base64url without padding.
    cid=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    # One in 64 starts with '-', which the tool's argument parser reads as an option (the format
    # then fails, "expected one argument"): its first character only carries the first 6 bits.
    [ "${cid:0:1}" != "-" ] || cid="A${cid:1}"
    # The SCRAM user goes in with the format: no admin round trip after the start.
    "$JAVA" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2-cli.properties" -cp "$KAFKA_LIBS/*" \
      kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_DIR/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$(scram_password)]" \
      >"$KAFKA_DIR/format.log" 2>&1 || { cat "$KAFKA_DIR/format.log" >&2; die "Kafka: storage format failed"; }
    echo "$SCRAM_USER" >"$KAFKA_DIR/scram.user"
  fi
  rm -f "$KAFKA_DIR/server.log"
  : >"$KAFKA_DIR/kafka.out"
  # setsid + nohup: the broker outlives this script and a Ctrl-C in the terminal that ran it.
  setsid nohup "$JAVA" -Xms256m -Xmx512m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$KAFKA_DIR/server.properties" >>"$KAFKA_DIR/kafka.out" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$KAFKA_DIR/pid"
  deadline=$(( SECONDS + 120 ))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    if grep -q 'Kafka Server started' "$KAFKA_DIR/server.log" 2>/dev/null &&
        wait_tcp "$port" 1 && wait_tcp "$sport" 1 && wait_tcp "$mport" 1; then
      return 0
    fi
    sleep 0.3
  done
  die "Kafka: broker did not start within 120 s (see $KAFKA_DIR/server.log and kafka.out)"
}

kafka_up() {
  if [ "$KAFKA_EXTERNAL" = 1 ]; then
    log "Kafka: KAFKA_BROKERS is set, using it (not starting one)"
    KAFKA_ADDR=$KAFKA_BROKERS
    return
  fi
  KAFKA_LIBS=$(kafka_libs)
  JAVA=$(java_bin)
  if kafka_running; then
    log "Kafka: already running on 127.0.0.1:$(cat "$KAFKA_DIR/port") (SASL_SSL :$(cat "$KAFKA_DIR/sasl_ssl.port"), mTLS :$(cat "$KAFKA_DIR/mtls.port"))"
  else
    mkdir -p "$KAFKA_DIR"
    if pid_alive "$KAFKA_DIR/pid" "$KAFKA_DIR/server.properties"; then
      if kafka_current; then
        log "Kafka: a broker of this stack runs but does not answer; restarting it"
      else
        log "Kafka: the running broker has no SASL_SSL and mTLS listeners (an older devstack.sh started it); restarting it with them"
      fi
      kafka_stop
    fi
    kafka_certs
    local port cport sport mport tries=0
    port=$(cat "$KAFKA_DIR/port" 2>/dev/null || true)
    cport=$(cat "$KAFKA_DIR/controller.port" 2>/dev/null || true)
    sport=$(cat "$KAFKA_DIR/sasl_ssl.port" 2>/dev/null || true)
    mport=$(cat "$KAFKA_DIR/mtls.port" 2>/dev/null || true)
    while :; do
      # Reuse the previous ports when free (stable env), otherwise take others.
      if [ -z "$port" ] || [ -z "$cport" ] || port_in_use "$port" || port_in_use "$cport"; then
        port=$(free_port); cport=$(free_port "$port")
      fi
      if [ -z "$sport" ] || [ -z "$mport" ] || port_in_use "$sport" || port_in_use "$mport"; then
        sport=$(free_port "$port" "$cport"); mport=$(free_port "$port" "$cport" "$sport")
      fi
      log "Kafka: starting $(kafka_version) (KRaft) on 127.0.0.1:$port, SASL_SSL :$sport, mTLS :$mport, controller :$cport"
      if kafka_start "$port" "$cport" "$sport" "$mport"; then break; fi
      tries=$((tries + 1))
      tail -n 20 "$KAFKA_DIR/kafka.out" >&2 || true
      [ "$tries" -lt 3 ] || die "Kafka: broker exited at start (see $KAFKA_DIR/server.log)"
      log "Kafka: broker exited at start, retrying on other ports"
      keep_ports "$KAFKA_DIR/port" || { port=""; cport=""; sport=""; mport=""; }
    done
    echo "$port" >"$KAFKA_DIR/port"
    echo "$cport" >"$KAFKA_DIR/controller.port"
    echo "$sport" >"$KAFKA_DIR/sasl_ssl.port"
    echo "$mport" >"$KAFKA_DIR/mtls.port"
    # Admin round trip: the broker serves metadata, not just accepts TCP connections.
    if ! "$JAVA" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2-cli.properties" -cp "$KAFKA_LIBS/*" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list >/dev/null; then
      die "Kafka: broker started but cannot list topics (see $KAFKA_DIR/server.log)"
    fi
    kafka_scram_user "$port"
    log "Kafka: ready on 127.0.0.1:$port, SASL_SSL :$sport, mTLS :$mport (pid $(cat "$KAFKA_DIR/pid"))"
  fi
  KAFKA_ADDR="127.0.0.1:$(cat "$KAFKA_DIR/port")"
  KAFKA_SASL_SSL_ADDR="127.0.0.1:$(cat "$KAFKA_DIR/sasl_ssl.port")"
  KAFKA_MTLS_ADDR="127.0.0.1:$(cat "$KAFKA_DIR/mtls.port")"
}

# kafka_scram_user PORT: storage formatted by an older devstack.sh has no SCRAM user: add it
# through the admin API, once.
kafka_scram_user() {
  [ -s "$KAFKA_DIR/scram.user" ] && return 0
  log "Kafka: adding the SCRAM-SHA-512 user $SCRAM_USER (storage formatted without it)"
  "$JAVA" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2-cli.properties" -cp "$KAFKA_LIBS/*" \
    kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$1" --alter --entity-type users --entity-name "$SCRAM_USER" \
    --add-config "SCRAM-SHA-512=[password=$(scram_password)]" >"$KAFKA_DIR/scram.log" 2>&1 ||
    { cat "$KAFKA_DIR/scram.log" >&2; die "Kafka: could not add the SCRAM user"; }
  echo "$SCRAM_USER" >"$KAFKA_DIR/scram.user"
}

kafka_stop() {
  pid_alive "$KAFKA_DIR/pid" "$KAFKA_DIR/server.properties" || return 0
  local pid i
  pid=$(head -n1 "$KAFKA_DIR/pid")
  log "Kafka: stopping (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null || true
}

kafka_status() {
  if [ -s "$KAFKA_DIR/port" ] && pid_alive "$KAFKA_DIR/pid" "$KAFKA_DIR/server.properties"; then
    echo "kafka: running, 127.0.0.1:$(cat "$KAFKA_DIR/port") (SASL_SSL :$(cat "$KAFKA_DIR/sasl_ssl.port" 2>/dev/null || echo none), mTLS :$(cat "$KAFKA_DIR/mtls.port" 2>/dev/null || echo none), controller :$(cat "$KAFKA_DIR/controller.port")), pid $(cat "$KAFKA_DIR/pid"), version $(kafka_version), logs $KAFKA_DIR"
  else
    echo "kafka: not running"
  fi
}

# ---------------------------------------------------------------------------------------------
# commands

# One `up`/`down` at a time per repo (two `make test` at once must not init the same cluster).
# Servers are started with fd 9 closed (9>&-) so they never inherit, and hold, this lock.
# `up pg` and `up kafka` (a restart of one server) lock that server's own file instead, so that
# one restart does not wait for the other's.
lock() {
  local f="$STACK/.lock${1:+.$1}"
  exec 9>"$f"
  flock -w 600 9 || die "another devstack.sh holds $f for 10 minutes"
}

# env_value VALUE EXTERNAL: our own values are written bare (the documented format); a value
# given by the caller is single-quoted, since it may hold any character ($, spaces, quotes).
env_value() {
  if [ "$2" = 1 ]; then printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; else printf '%s' "$1"; fi
}

write_env() {
  local tmp="$ENV_FILE.tmp"
  {
    echo "# written by scripts/devstack.sh up; source it: . .stack/env"
    if [ -n "${PG_URL:-}" ]; then echo "export DATABASE_URL=$(env_value "$PG_URL" "$PG_EXTERNAL")"; fi
    if [ -n "${KAFKA_ADDR:-}" ]; then echo "export KAFKA_BROKERS=$(env_value "$KAFKA_ADDR" "$KAFKA_EXTERNAL")"; fi
    if [ -n "${KAFKA_SASL_SSL_ADDR:-}" ]; then
      # The broker's security listeners and the test material to reach them (tests only; the
      # daemon reads none of these names).
      echo "export KAFKA_SASL_SSL_BROKERS=$KAFKA_SASL_SSL_ADDR"
      echo "export KAFKA_MTLS_BROKERS=$KAFKA_MTLS_ADDR"
      echo "export KAFKA_TEST_CA_FILE=$TLS_DIR/ca.pem"
      echo "export KAFKA_TEST_CLIENT_CERT_FILE=$TLS_DIR/client.pem"
      echo "export KAFKA_TEST_CLIENT_KEY_FILE=$TLS_DIR/client.key"
      echo "export KAFKA_TEST_EXPIRED_CERT_FILE=$TLS_DIR/client-expired.pem"
      echo "export KAFKA_TEST_EXPIRED_KEY_FILE=$TLS_DIR/client-expired.key"
      echo "export KAFKA_TEST_SCRAM_USERNAME=$(cat "$KAFKA_DIR/scram.user")"
      echo "export KAFKA_TEST_SCRAM_PASSWORD=$(scram_password)"
    fi
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

# show_env: .stack/env for a terminal, the test SCRAM password left out.
show_env() {
  sed -e 's/^/  /' -e 's/^\(  export KAFKA_TEST_SCRAM_PASSWORD=\).*/\1(see .stack\/env)/' "$ENV_FILE" | grep -v '^  #'
}

# cmd_up [pg|kafka]: start what is not running. With a server named, only that one, on the
# ports it had (the chaos suite's restarts); .stack/env is then left as it is.
cmd_up() {
  local only=${1:-}
  case "$only" in ""|pg|kafka) ;; *) die "up: pg or kafka, not $only" ;; esac
  mkdir -p "$STACK"
  lock "$only"
  PG_URL="" KAFKA_ADDR="" KAFKA_SASL_SSL_ADDR="" KAFKA_MTLS_ADDR=""
  # Decide before .stack/env is rewritten below (it is what tells our values from others').
  PG_EXTERNAL=0 KAFKA_EXTERNAL=0
  if external DATABASE_URL; then PG_EXTERNAL=1; fi
  if external KAFKA_BROKERS; then KAFKA_EXTERNAL=1; fi
  if [ -n "$only" ]; then
    [ -f "$ENV_FILE" ] || die "up $only: restarts a server of a stack that was started (no $ENV_FILE)"
    if [ "$only" = pg ]; then pg_up; else kafka_up; fi
    return
  fi
  pg_up
  write_env
  kafka_up
  write_env
  log "env written to $ENV_FILE:"
  show_env >&2
}

cmd_down() {
  if [ ! -d "$STACK" ]; then log "nothing to stop ($STACK does not exist)"; return; fi
  lock
  kafka_stop
  pg_down
  rm -rf "$STACK"
  log "stopped; removed $STACK"
}

cmd_status() {
  pg_status
  kafka_status
  if [ -f "$ENV_FILE" ]; then echo "env: $ENV_FILE"; show_env; else echo "env: none (run up)"; fi
}

cmd_env() {
  [ -f "$ENV_FILE" ] || die "$ENV_FILE does not exist: run scripts/devstack.sh up"
  cat "$ENV_FILE"
}

case "${1:-}" in
  up) cmd_up "${2:-}" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
