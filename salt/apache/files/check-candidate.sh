#!/bin/sh
# Managed by Salt (apache formula).
# Usage: apache2-check-candidate RELATIVE_PATH CANDIDATE
# Checks the Apache configuration as it would be with CANDIDATE installed at
# /etc/apache2/RELATIVE_PATH, on a copy of the tree; the live tree is untouched.
# (Debian's enabled-links are relative, so they resolve inside the copy.)
set -eu
rel="$1" candidate="$2"
tmp=$(mktemp -d /etc/apache2-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -a /etc/apache2/. "$tmp/"
cp "$candidate" "$tmp/$rel"
# envvars derives run and log directories from the tree's name; keep the live ones.
cat >> "$tmp/envvars" <<'VARS'
export APACHE_RUN_DIR=/var/run/apache2 APACHE_LOCK_DIR=/var/lock/apache2 APACHE_LOG_DIR=/var/log/apache2
export APACHE_PID_FILE=/var/run/apache2/apache2.pid
VARS
APACHE_CONFDIR="$tmp" apache2ctl -t
