#!/bin/sh
# Managed by Salt (keepalived formula).
# Reloads keepalived and waits until it has loaded the new configuration:
#     keepalived-reload UNIT TIMEOUT
# keepalived tells systemd when every child process has read it (the unit
# is "reloading" until then). keepalived 2.2.7's parent loses count when a
# child dies during a reload: it never says the reload is over, a plain
# `systemctl reload` waits for ever, and keepalived queues every later
# reload. After TIMEOUT seconds this cancels the reload job and restarts
# keepalived: the VIPs go to a peer, and come back once its checks pass.
set -u
unit=$1 timeout=$2

reloaded() {
    [ "$(systemctl show -p ActiveState --value "$unit")" = active ] &&
        [ -z "$(systemctl list-jobs --no-legend "$unit")" ]
}

systemctl reload --no-block "$unit"
waited=0
while [ "$waited" -lt "$((timeout * 2))" ]; do
    sleep 0.5
    if reloaded; then
        echo "$unit reloaded"
        exit 0
    fi
    waited=$((waited + 1))
done
echo "$unit did not finish its reload within ${timeout} s: cancelling it and restarting $unit" >&2
for job in $(systemctl list-jobs --no-legend "$unit" | awk '{print $1}'); do
    systemctl cancel "$job"
done
systemctl restart "$unit"
