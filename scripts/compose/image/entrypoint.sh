#!/bin/sh
# Entrypoint of the leasehold compose image. Before running the command, it creates the files that
# name a shared credential when they do not exist yet:
#   $LEASEHOLD_SECRET_FILE       the cluster secret: 32 random bytes
#   $LEASEHOLD_ADMIN_TOKEN_FILE  the admin API's bearer token: 24 random bytes in base64 (32 visible
#                                characters; an HTTP header carries it). The `leasehold` commands read
#                                this variable too, so `docker compose exec nodeN leasehold ...` sends it.
# Several nodes sharing the volume may start at once: each writes a private temporary file and
# hard-links it into place; ln is atomic and fails when the file exists, so the first node wins and
# every node reads the same, complete file.
set -e

# make_once FILE WHAT: create FILE from this script's stdin unless it exists and is not empty.
make_once() {
    file=$1
    what=$2
    if [ -s "$file" ]; then
        cat >/dev/null
        return 0
    fi
    mkdir -p "$(dirname "$file")"
    tmp="$file.$$.$(hostname).tmp"
    cat >"$tmp"
    chmod 600 "$tmp"
    if ln "$tmp" "$file" 2>/dev/null; then
        echo "leasehold-entrypoint: generated the $what $file"
    fi
    rm -f "$tmp"
}

if [ -n "${LEASEHOLD_SECRET_FILE:-}" ]; then
    head -c 32 /dev/urandom | make_once "$LEASEHOLD_SECRET_FILE" "cluster secret"
fi
if [ -n "${LEASEHOLD_ADMIN_TOKEN_FILE:-}" ]; then
    head -c 24 /dev/urandom | base64 | make_once "$LEASEHOLD_ADMIN_TOKEN_FILE" "admin token"
fi
exec "$@"
