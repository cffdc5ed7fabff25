# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables below are used by the scripts that source this file
# Shared helpers and defaults for the scripts in scripts/ and .ci/.
# Source it (". scripts/lib.sh"); it does nothing on its own.
#
# Every default lives here, so that a value changed in one place is the
# same for scripts/services, scripts/test and scripts/quickstart. Each one
# can be overridden from the environment (see .env.example).

FERRUM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Settings from .env (see .env.example), for variables the environment does
# not already set: environment first, then .env, then the defaults below.
load_dotenv() {
    local line key
    [ -f "$FERRUM_ROOT/.env" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)= ]] || continue
        key="${BASH_REMATCH[2]}"
        [ -n "${!key+set}" ] && continue
        eval "export ${line#"${BASH_REMATCH[1]}"}"
    done <"$FERRUM_ROOT/.env"
}
load_dotenv

# Downloads (Keycloak, FHIR example package, fallback JDK) are kept outside
# the clone so that a fresh clone on the same machine reuses them.
FERRUM_CACHE="${FERRUM_CACHE:-$HOME/.cache/ferrum}"
# Runtime state of this clone: logs, pid files, which services a run started.
FERRUM_LOCAL="$FERRUM_ROOT/.local"
FERRUM_LOG_DIR="$FERRUM_LOCAL/logs"
FERRUM_RUN_DIR="$FERRUM_LOCAL/run"

# Which backing services scripts/services manages. Drop one from the list
# to use a server of your own (and point the matching *_URL at it).
FERRUM_SERVICES="${FERRUM_SERVICES:-postgres rabbitmq keycloak}"

# --- PostgreSQL -------------------------------------------------------------
PG_VERSION="${PG_VERSION:-15}"
PG_CLUSTER="${PG_CLUSTER:-main}"
PGPORT="${PGPORT:-5432}"
FERRUM_DB_USER="${FERRUM_DB_USER:-ferrum}"
FERRUM_DB_PASSWORD="${FERRUM_DB_PASSWORD:-ferrum}"
FERRUM_DB_NAME="${FERRUM_DB_NAME:-ferrum}"
DATABASE_URL="${DATABASE_URL:-postgres://$FERRUM_DB_USER:$FERRUM_DB_PASSWORD@127.0.0.1:$PGPORT/$FERRUM_DB_NAME}"

# --- RabbitMQ ---------------------------------------------------------------
RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
RABBITMQ_MANAGEMENT_PORT="${RABBITMQ_MANAGEMENT_PORT:-15672}"
RABBITMQ_URL="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/%2f}"

# --- Keycloak ---------------------------------------------------------------
KEYCLOAK_VERSION="${KEYCLOAK_VERSION:-26.7.3}"
KEYCLOAK_PORT="${KEYCLOAK_PORT:-8081}"
KEYCLOAK_URL="${KEYCLOAK_URL:-http://localhost:$KEYCLOAK_PORT}"
KEYCLOAK_REALM="${KEYCLOAK_REALM:-fhir}"
KEYCLOAK_REALM_FILE="${KEYCLOAK_REALM_FILE:-$FERRUM_ROOT/deploy/keycloak/fhir-realm.json}"
KEYCLOAK_ADMIN_USER="${KEYCLOAK_ADMIN_USER:-admin}"
KEYCLOAK_ADMIN_PASSWORD="${KEYCLOAK_ADMIN_PASSWORD:-admin}"
# Keycloak sizes its heap from total RAM by default (70 %); cap it.
KEYCLOAK_HEAP_OPTS="${KEYCLOAK_HEAP_OPTS:--Xms128m -Xmx768m}"
# Seconds to wait for Keycloak to serve the realm (first start on 2 cores is slow).
KEYCLOAK_START_TIMEOUT="${KEYCLOAK_START_TIMEOUT:-300}"
KEYCLOAK_MAVEN_BASE="https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist"
FHIR_AUTH_ISSUER="${FHIR_AUTH_ISSUER:-$KEYCLOAK_URL/realms/$KEYCLOAK_REALM}"

# --- FHIR server ------------------------------------------------------------
FHIR_LISTEN_ADDR="${FHIR_LISTEN_ADDR:-0.0.0.0:8080}"
FHIR_BASE_URL="${FHIR_BASE_URL:-http://localhost:8080/fhir}"

# Official R4 example resources (npm package), used by the test suite.
FHIR_R4_EXAMPLES_PACKAGE="hl7.fhir.r4.examples@4.0.1"
# The public FHIR test cases (Maven Central jar); the test suite runs its R4 patch cases.
FHIR_TEST_CASES_VERSION="1.7.69"
FHIR_TEST_CASES_URL="https://repo1.maven.org/maven2/org/hl7/fhir/testcases/fhir-test-cases/$FHIR_TEST_CASES_VERSION/fhir-test-cases-$FHIR_TEST_CASES_VERSION.jar"

export FERRUM_ROOT FERRUM_CACHE PGPORT DATABASE_URL RABBITMQ_URL \
    KEYCLOAK_URL FHIR_AUTH_ISSUER FHIR_LISTEN_ADDR FHIR_BASE_URL

# --- output -----------------------------------------------------------------

# Progress notes go to stderr so stdout keeps one line per service.
note() { printf '  .. %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# --- small utilities ----------------------------------------------------------

# True when something accepts TCP connections on host:port.
port_open() {
    local host="$1" port="$2"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# HTTP status code of a GET (000 when nothing answers).
http_status() {
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND once a second.
wait_until() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            warn "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 1
    done
}

# True when systemd runs the machine; containers and sandboxes often lack it,
# and then services are started through their init scripts or directly.
have_systemd() { [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }

# Run a command as root (directly when we are root, else through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# True when every named Debian package is installed.
debs_installed() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || return 1
    done
}

# Install Debian packages that are missing. Packages must not start their
# daemons while installing: that would race with how scripts/services starts
# them, and on a machine without systemd a failing start aborts the install.
# A temporary policy-rc.d tells invoke-rc.d not to start anything.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do debs_installed "$pkg" || missing+=("$pkg"); done
    [ "${#missing[@]}" -eq 0 ] && return 0
    note "installing ${missing[*]} (apt, log in $FERRUM_LOG_DIR/apt.log)"
    mkdir -p "$FERRUM_LOG_DIR"
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        own_policy=1
    fi
    local rc=0
    {
        # Refresh package lists when they are missing or older than a day,
        # and once more if the install fails (stale lists give 404s).
        if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
            as_root apt-get update
        fi
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" ||
            { as_root apt-get update &&
                as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; }
    } >>"$FERRUM_LOG_DIR/apt.log" 2>&1 || rc=$?
    if [ "$own_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} failed (see $FERRUM_LOG_DIR/apt.log)"
}

# Download URL to FILE once (kept in the cache); verify the .sha1 that Maven
# Central publishes next to each artifact when VERIFY_SHA1=1.
download_once() {
    local url="$1" file="$2" verify_sha1="${3:-0}"
    [ -s "$file" ] && return 0
    mkdir -p "$(dirname "$file")"
    note "downloading $url"
    curl -fsSL --retry 3 --retry-delay 2 -o "$file.part" "$url" || die "download failed: $url"
    if [ "$verify_sha1" = 1 ]; then
        local want have
        want="$(curl -fsSL --retry 3 "$url.sha1" | awk '{print $1}')" || die "download failed: $url.sha1"
        have="$(sha1sum "$file.part" | awk '{print $1}')"
        [ "$want" = "$have" ] || die "checksum mismatch for $url (want $want, got $have)"
    fi
    mv "$file.part" "$file"
}
