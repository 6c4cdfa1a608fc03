#!/usr/bin/env bash
# pgtest.sh - start and stop the throwaway PostgreSQL servers the specs and
# the demo talk to.
#
#   scripts/pgtest.sh start DIR   DIR is an empty directory the caller made
#   scripts/pgtest.sh stop DIR    stops the servers and removes DIR
#
# start makes, under DIR:
#   certs/       a CA, a server certificate for localhost and 127.0.0.1
#                (and, for the same key, ones signed with SHA-384 and
#                SHA-512), client certificates whose CN is the database
#                user, and a second, unrelated CA with a client
#                certificate of its own;
#                for the hostile test server, server certificates that are
#                expired, not yet valid, for another host, or revoked in
#                the CA's revocation list ca.crl
#   tls/         server "tls": TLS on, one pg_hba.conf line per
#                authentication method; its Unix socket is in sock/
#   plain/       server "plain": TLS off, trust and SCRAM; socket in sock2/
#   env.sh       the PGC_TEST_* variables the specs read
#
# Both servers listen on 127.0.0.1 only, on ports picked at random from
# those that are free.  Run as root, the servers run as the postgres user
# (initdb and postgres refuse root); run as anyone else, they run as that
# user.  PG_BIN names the directory of initdb and pg_ctl when the newest
# /usr/lib/postgresql/*/bin is not the one wanted.
set -eu
# Failures inside $(...) stop the script too.
shopt -s inherit_errexit

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

# ---------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------

# Runs a command as the user the servers run as, from / so that a
# working directory that user may not enter does not get in the way.
as_server_user() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Gives a file or directory to the user the servers run as.
give_to_server_user() {
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$@"
    fi
}

# Prints the directory holding initdb, pg_ctl and postgres.
find_pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then
        echo "$PG_BIN"
        return
    fi
    local newest
    newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$newest" ]; then
        echo "$newest"
    else
        dirname "$(command -v initdb)"
    fi
}

# Succeeds when something listens on TCP port $1 of 127.0.0.1.
port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ] && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints a port in 20000-39999 that nobody listens on and that is not
# among the arguments (ports already handed out).
pick_free_port() {
    local port taken
    while :; do
        port=$((20000 + RANDOM % 20000))
        for taken in "$@"; do
            [ "$port" = "$taken" ] && continue 2
        done
        port_in_use "$port" || break
    done
    echo "$port"
}

# ---------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------

# Writes a new private key to $1, readable by its owner only.
new_key() {
    (umask 077 && openssl genpkey -algorithm RSA \
        -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null)
}

# Makes a self-signed CA: new_ca NAME "Common Name" writes NAME.key and
# NAME.crt.
new_ca() {
    new_key "$CERTS/$1.key"
    openssl req -new -x509 -days 3650 -key "$CERTS/$1.key" \
        -subj "/CN=$2" -out "$CERTS/$1.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
}

# Makes a certificate signed by a CA:
#   new_cert NAME CA "Common Name" EXTENSIONS
# writes NAME.key and NAME.crt; EXTENSIONS are openssl extension lines.
new_cert() {
    local name=$1 ca=$2 cn=$3 extensions=$4
    new_key "$CERTS/$name.key"
    printf '%s\n' "$extensions" >"$CERTS/$name.ext"
    openssl req -new -key "$CERTS/$name.key" -subj "/CN=$cn" |
        openssl x509 -req -days 825 \
            -CA "$CERTS/$ca.crt" -CAkey "$CERTS/$ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" \
            -extfile "$CERTS/$name.ext" -out "$CERTS/$name.crt" 2>/dev/null
    rm -f "$CERTS/$name.ext"
}

# Signs another certificate for an existing key, with the given digest:
#   resign_cert NAME KEY CA "Common Name" EXTENSIONS DIGEST
# writes NAME.crt for the key in KEY.key.
resign_cert() {
    local name=$1 key=$2 ca=$3 cn=$4 extensions=$5 digest=$6
    printf '%s\n' "$extensions" >"$CERTS/$name.ext"
    openssl req -new -key "$CERTS/$key.key" -subj "/CN=$cn" |
        openssl x509 -req -days 825 "-$digest" \
            -CA "$CERTS/$ca.crt" -CAkey "$CERTS/$ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" \
            -extfile "$CERTS/$name.ext" -out "$CERTS/$name.crt" 2>/dev/null
    rm -f "$CERTS/$name.ext"
}

# Makes a certificate signed by the test CA with "openssl ca", which,
# unlike "openssl x509", sets any validity period and keeps the record
# that a revocation list is made from:
#   ca_cert NAME "Common Name" EXTENSIONS START END
# with START and END as YYYYMMDDHHMMSSZ; writes NAME.key and NAME.crt.
# Works in the CA directory make_bad_server_certificates sets up.
ca_cert() {
    local name=$1 cn=$2 extensions=$3 start=$4 end=$5
    new_key "$CERTS/$name.key"
    printf '%s\n' "$extensions" >"$CA_DIR/$name.ext"
    openssl req -new -key "$CERTS/$name.key" -subj "/CN=$cn" \
        -out "$CA_DIR/$name.csr"
    openssl ca -batch -notext -config "$CA_DIR/ca.cnf" \
        -extfile "$CA_DIR/$name.ext" -startdate "$start" -enddate "$end" \
        -in "$CA_DIR/$name.csr" -out "$CERTS/$name.crt" 2>/dev/null
}

# Makes the server certificates the hostile test server presents, all
# signed by the test CA, and the CA's revocation list:
#   expired-server        valid in 2020 only
#   not-yet-valid-server  valid from 2045 on
#   other-host-server     for other.example.test only
#   revoked-server        valid, but listed in ca.crl
# $1 is the extension lines of the good server certificate.
make_bad_server_certificates() {
    local server_ext=$1 other_ext now later
    other_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:other.example.test
authorityKeyIdentifier=keyid"
    now=$(date -u +%Y%m%d%H%M%SZ)
    later=$(date -u -d '+2 years' +%Y%m%d%H%M%SZ)

    CA_DIR=$DIR/ca
    mkdir -p "$CA_DIR/new"
    : >"$CA_DIR/index.txt"
    openssl rand -hex 8 >"$CA_DIR/serial"
    echo 01 >"$CA_DIR/crlnumber"
    cat >"$CA_DIR/ca.cnf" <<EOF
[ca]
default_ca = test_ca

[test_ca]
database = $CA_DIR/index.txt
new_certs_dir = $CA_DIR/new
serial = $CA_DIR/serial
crlnumber = $CA_DIR/crlnumber
certificate = $CERTS/ca.crt
private_key = $CERTS/ca.key
default_md = sha256
default_crl_days = 30
policy = any_name
unique_subject = no
copy_extensions = none

[any_name]
commonName = supplied
EOF

    ca_cert expired-server localhost "$server_ext" \
        20200101000000Z 20201231000000Z
    ca_cert not-yet-valid-server localhost "$server_ext" \
        20450101000000Z 20460101000000Z
    ca_cert other-host-server other.example.test "$other_ext" "$now" "$later"
    ca_cert revoked-server localhost "$server_ext" "$now" "$later"

    openssl ca -batch -config "$CA_DIR/ca.cnf" \
        -revoke "$CERTS/revoked-server.crt" 2>/dev/null
    openssl ca -batch -config "$CA_DIR/ca.cnf" -gencrl \
        -out "$CERTS/ca.crl" 2>/dev/null
    chmod 644 "$CERTS/ca.crl"

    rm -rf "$CA_DIR"
}

make_certificates() {
    local client_ext server_ext
    client_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid"
    server_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier=keyid"

    mkdir -p "$CERTS"
    chmod 755 "$CERTS"

    new_ca ca "pgtest CA"
    new_cert server ca localhost "$server_ext"
    # The server's key again, in certificates signed with other digests,
    # for which tls-server-end-point hashes with SHA-384 and SHA-512.
    local digest
    for digest in sha384 sha512; do
        resign_cert "server-$digest" server ca "pgtest $digest server" \
            "$server_ext" "$digest"
    done
    new_cert certuser ca certuser "$client_ext"
    new_cert scramuser ca scramuser "$client_ext"

    # A CA the servers do not trust, and a client certificate from it
    # that names a real user.
    new_ca other-ca "pgtest other CA"
    new_cert other-certuser other-ca certuser "$client_ext"

    # A well-formed key that does not belong to certuser.crt.
    new_key "$CERTS/certuser-mismatch.key"

    make_bad_server_certificates "$server_ext"

    chmod 644 "$CERTS"/*.crt
    chmod 600 "$CERTS"/*.key
}

# ---------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------

# Runs SQL read from standard input against database $3 of the server
# whose socket directory is $1 and port is $2, as the postgres role.
run_sql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -U postgres \
        -d "$3" >/dev/null
}

# Creates a cluster: init_cluster NAME SOCKET_DIR.  NAME/data is the data
# directory, NAME/log the server log.
init_cluster() {
    local base=$DIR/$1 socket_dir=$2
    mkdir -p "$base" "$socket_dir"
    give_to_server_user "$base" "$socket_dir"
    as_server_user "$PG_BIN/initdb" -D "$base/data" -U postgres \
        --auth=trust --no-locale -E UTF8 --no-sync >"$base/initdb.log" 2>&1 ||
        { cat "$base/initdb.log" >&2; return 1; }

    # Settings that vary per run (the port) live in pgtest.conf, which
    # postgresql.conf includes; start_cluster rewrites it.
    echo "include 'pgtest.conf'" >>"$base/data/postgresql.conf"
}

# Writes the settings of cluster NAME: write_settings NAME PORT SOCKET_DIR
# followed by extra setting lines.
write_settings() {
    local base=$DIR/$1 port=$2 socket_dir=$3
    shift 3
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$socket_dir'"
        echo "password_encryption = 'scram-sha-256'"
        echo "max_connections = 100"
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
        echo "log_connections = on"
        printf '%s\n' "$@"
    } >"$base/data/pgtest.conf"
    give_to_server_user "$base/data/pgtest.conf"
}

# Starts cluster NAME on a free port other than the TLS server's and
# prints the port.  Another process may take the port between the check
# and the bind, so a bind failure is retried on a new port.  Extra
# arguments, after NAME and SOCKET_DIR, are setting lines.
start_cluster() {
    local name=$1 socket_dir=$2 port _
    shift 2
    for _ in 1 2 3 4 5; do
        # Unquoted: no argument at all while TLS_PORT is still empty.
        port=$(pick_free_port $TLS_PORT)
        write_settings "$name" "$port" "$socket_dir" "$@"
        if as_server_user "$PG_BIN/pg_ctl" -D "$DIR/$name/data" \
            -l "$DIR/$name/log" -w -t 60 start >/dev/null; then
            echo "$port"
            return 0
        fi
        grep -q 'could not bind\|could not create any TCP/IP' \
            "$DIR/$name/log" 2>/dev/null || break
    done
    echo "pgtest: server $name did not start" >&2
    return 1
}

setup_tls_server() {
    local sock=$DIR/sock data=$DIR/tls/data

    init_cluster tls "$sock"

    # The server key must belong to the server's user with mode 0600, so
    # the server gets copies of its files inside the data directory.
    cp "$CERTS/server.crt" "$CERTS/server.key" "$CERTS/ca.crt" \
        "$CERTS"/server-sha*.crt "$data/"
    chmod 600 "$data/server.key"
    give_to_server_user "$data/server.crt" "$data/server.key" "$data/ca.crt" \
        "$data"/server-sha*.crt

    cat >"$data/pg_hba.conf" <<'EOF'
local   all  all                     trust
hostssl all  certuser   127.0.0.1/32 cert
hostssl all  scramuser  127.0.0.1/32 scram-sha-256
host    all  scramuser  127.0.0.1/32 scram-sha-256
host    all  md5user    127.0.0.1/32 md5
host    all  pwuser     127.0.0.1/32 password
host    all  trustuser  127.0.0.1/32 trust
host    all  postgres   127.0.0.1/32 trust
host    all  scram_nfc,scram_nbsp 127.0.0.1/32 scram-sha-256
EOF

    TLS_PORT=$(start_cluster tls "$sock" \
        "ssl = on" \
        "ssl_cert_file = '$data/server.crt'" \
        "ssl_key_file = '$data/server.key'" \
        "ssl_ca_file = '$data/ca.crt'")

    run_sql "$sock" "$TLS_PORT" postgres <<'EOF'
CREATE ROLE certuser LOGIN;
CREATE ROLE scramuser LOGIN PASSWORD 'scram-pass';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5-pass';
RESET password_encryption;
CREATE ROLE pwuser LOGIN PASSWORD 'pw-pass';
CREATE ROLE trustuser LOGIN;
CREATE DATABASE pgtest OWNER postgres;
GRANT ALL ON DATABASE pgtest
    TO certuser, scramuser, md5user, pwuser, trustuser;
EOF
    run_sql "$sock" "$TLS_PORT" pgtest <<'EOF'
GRANT ALL ON SCHEMA public TO PUBLIC;
EOF
}

setup_plain_server() {
    local sock=$DIR/sock2 data=$DIR/plain/data

    init_cluster plain "$sock"

    cat >"$data/pg_hba.conf" <<'EOF'
local   all  all                     trust
host    all  scramuser  127.0.0.1/32 scram-sha-256
host    all  all        127.0.0.1/32 trust
EOF

    PLAIN_PORT=$(start_cluster plain "$sock" "ssl = off")

    run_sql "$sock" "$PLAIN_PORT" postgres <<'EOF'
CREATE ROLE scramuser LOGIN PASSWORD 'scram-pass';
CREATE ROLE trustuser LOGIN;
CREATE DATABASE pgtest OWNER postgres;
GRANT ALL ON DATABASE pgtest TO scramuser, trustuser;
EOF
    run_sql "$sock" "$PLAIN_PORT" pgtest <<'EOF'
GRANT ALL ON SCHEMA public TO PUBLIC;
EOF
}

write_env() {
    {
        printf 'export PGC_TEST_HOST=127.0.0.1\n'
        printf 'export PGC_TEST_PORT=%s\n' "$TLS_PORT"
        printf 'export PGC_TEST_PLAIN_PORT=%s\n' "$PLAIN_PORT"
        printf 'export PGC_TEST_SOCKET_DIR=%q\n' "$DIR/sock"
        printf 'export PGC_TEST_PLAIN_SOCKET_DIR=%q\n' "$DIR/sock2"
        printf 'export PGC_TEST_DB=pgtest\n'
        printf 'export PGC_TEST_CERTS=%q\n' "$CERTS"
        printf 'export PGC_TEST_DIR=%q\n' "$DIR"
    } >"$DIR/env.sh"
}

# Stops whichever servers under DIR are running; quiet, and never fails.
stop_servers() {
    local name
    for name in tls plain; do
        if [ -f "$DIR/$name/data/postmaster.pid" ]; then
            as_server_user "$PG_BIN/pg_ctl" -D "$DIR/$name/data" \
                -m immediate -w -t 60 stop >/dev/null 2>&1 || true
        fi
    done
}

# Runs when start exits: if it did not get to the end, shows what the
# servers logged, stops what was started, and leaves DIR in place for a
# look.
start_finished() {
    local status=$? log
    [ -z "$START_DONE" ] || return 0
    echo "pgtest: start failed; $DIR kept for inspection" >&2
    for log in "$DIR"/tls/log "$DIR"/plain/log; do
        if [ -f "$log" ]; then
            echo "---- last lines of $log" >&2
            tail -n 30 "$log" >&2
        fi
    done
    stop_servers
    [ "$status" -ne 0 ] || status=1
    exit "$status"
}

# ---------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------

cmd_start() {
    mkdir -p "$DIR"
    if [ -n "$(ls -A "$DIR")" ]; then
        echo "pgtest: $DIR is not empty" >&2
        exit 1
    fi

    # The marker tells stop that this directory is ours to remove.
    touch "$DIR/.pgtest"
    chmod 755 "$DIR"

    trap start_finished EXIT

    make_certificates
    setup_tls_server
    setup_plain_server
    write_env

    START_DONE=1
    echo "pgtest: tls server on 127.0.0.1:$TLS_PORT," \
        "plain server on 127.0.0.1:$PLAIN_PORT; env in $DIR/env.sh"
}

cmd_stop() {
    [ -d "$DIR" ] || exit 0
    if [ ! -f "$DIR/.pgtest" ]; then
        echo "pgtest: $DIR was not made by '$0 start'; left alone" >&2
        exit 1
    fi
    stop_servers
    rm -rf "$DIR"
}

[ $# -eq 2 ] || usage
[ -n "$2" ] || usage

# The servers run from /, so DIR is made absolute.
if ! parent=$(cd "$(dirname "$2")" 2>/dev/null && pwd); then
    [ "$1" = stop ] && exit 0
    echo "pgtest: no such directory: $(dirname "$2")" >&2
    exit 1
fi
DIR=${parent%/}/$(basename "$2")
CERTS=$DIR/certs
PG_BIN=$(find_pg_bin)
START_DONE=""
TLS_PORT=""
PLAIN_PORT=""

case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    *) usage ;;
esac
