# Every minion's own schedule (Salt merges a pillar `schedule` into it). It
# runs in the minion whether or not a master hears it, and returns nothing.
---
schedule:
  # The minion's health for the node exporter (_modules/minion_health.py):
  # the alert rules' SaltMinionDisconnected and SaltMinionStopped; and, with
  # failover masters, the check that moves it to the next master and back.
  cluster-minion-health:
    function: minion_health.check
    seconds: 30
    run_on_start: true
    maxrunning: 1
    return_job: false
