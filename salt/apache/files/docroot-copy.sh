#!/bin/sh
# Managed by Salt (apache formula).
# Refreshes this web server's copy of the cluster's docroot from the nas's
# export (its NFS mount):  cluster-docroot-copy SOURCE COPY MARKER [MOUNT]
# Apache serves COPY, so the site keeps answering while the nas is down.
#
# The copy is refreshed only from the docroot it came from: SOURCE must hold
# MARKER with the same content as COPY's (a first copy takes it). An export
# that lost its data, a nas rebuilt empty, or a mount that is not there
# leaves the copy as it is. rsync puts every changed file in place at the end
# of the run (--delay-updates), deletes nothing after a read error, and tells
# a changed file by its size and modification time to the nanosecond
# (--modify-window=-1: a page rewritten within the second, same size, is new).
#
# MOUNT (the NFS mount SOURCE is in) is mounted again when it went stale: a
# nas rebuilt on a new disk exports a new filesystem, and every file handle
# the web server holds of the old one answers "Stale file handle" until then.
set -eu
source=$1 copy=$2 marker=$3 mount=${4:-}

# Reading the mount of an unreachable nas waits for NFS's soft timeout (tens
# of seconds); give up sooner: the timer runs this again.
readable() {
    timeout -s KILL 5 test -f "$source/$marker"
}
stale() {
    [ -n "$mount" ] && timeout -s KILL 5 stat "$mount" 2>&1 >/dev/null | grep -q "Stale file handle"
}
if ! readable && stale; then
    echo "$mount is stale (the nas exports a new filesystem): mounting it again" >&2
    umount -l "$mount" || true
    timeout -s KILL 20 mount "$mount" || true
fi
if ! readable; then
    echo "$source/$marker is not readable (nas unreachable, export not mounted, or not the cluster's docroot): copy kept as it is" >&2
    exit 1
fi
if [ -e "$copy/$marker" ] && ! cmp -s "$source/$marker" "$copy/$marker"; then
    echo "$source is not the docroot $copy was copied from ($marker differs): copy kept as it is (docs/operations.md, 'The docroot')" >&2
    exit 1
fi
exec rsync --archive --delete --delay-updates --modify-window=-1 "$source/" "$copy/"
