#!/bin/sh
# Managed by Salt (nfs formula).
# Restores the nas's docroot from a web server's copy when the export has
# lost it (a disk replaced, a nas rebuilt):
#     cluster-docroot-restore DOCROOT MARKER SOURCE...
# Each SOURCE is a web server's read-only rsync module of its copy
# (rsync://ADDRESS:PORT/MODULE). The first that answers with MARKER (the
# docroot's identity) is copied in whole, MARKER last: a restore cut short
# leaves no marker, and the next run starts over. Exit 0 and "no copy" when
# no source holds one (a new cluster: the webcontent formula makes a new
# docroot); exit 1 when a copy was found but could not be taken.
set -u
docroot=$1 marker=$2
shift 2
if [ -e "$docroot/$marker" ]; then
    echo "$docroot holds its marker: nothing to restore"
    exit 0
fi
# Ask every source at once: one that is down costs its connect timeout once.
answers=$(mktemp -d)
trap 'rm -rf "$answers"' EXIT
index=0
for source in "$@"; do
    index=$((index + 1))
    (rsync --contimeout=5 --timeout=10 --list-only "$source/$marker" >/dev/null 2>&1 && touch "$answers/$index") &
done
wait
index=0
for source in "$@"; do
    index=$((index + 1))
    [ -e "$answers/$index" ] || continue
    mkdir -p "$docroot"
    if rsync --archive --hard-links --numeric-ids --contimeout=5 --timeout=60 --exclude="/$marker" \
        "$source/" "$docroot/" &&
        rsync --archive --numeric-ids --contimeout=5 --timeout=60 "$source/$marker" "$docroot/$marker"; then
        echo "restored $docroot from $source"
        exit 0
    fi
    echo "restoring $docroot from $source failed; trying the next copy" >&2
done
if [ -n "$(ls -A "$answers")" ]; then
    echo "no copy could be taken: $docroot left without its marker (run again)" >&2
    exit 1
fi
echo "no copy of the docroot on any of: $*; the webcontent formula makes a new one"
