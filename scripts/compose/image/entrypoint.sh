#!/bin/sh
# Entrypoint of the leasehold compose image. When $LEASEHOLD_SECRET_FILE names a file that does not
# exist yet, create it with 32 random bytes first. Several nodes sharing the volume may start at once:
# each writes a private temporary file and hard-links it into place; ln is atomic and fails when the
# file exists, so the first node wins and every node reads the same, complete secret.
set -e
if [ -n "${LEASEHOLD_SECRET_FILE:-}" ] && [ ! -s "$LEASEHOLD_SECRET_FILE" ]; then
    mkdir -p "$(dirname "$LEASEHOLD_SECRET_FILE")"
    tmp="$LEASEHOLD_SECRET_FILE.$$.$(hostname).tmp"
    head -c 32 /dev/urandom >"$tmp"
    chmod 600 "$tmp"
    if ln "$tmp" "$LEASEHOLD_SECRET_FILE" 2>/dev/null; then
        echo "leasehold-entrypoint: generated the cluster secret $LEASEHOLD_SECRET_FILE"
    fi
    rm -f "$tmp"
fi
exec "$@"
