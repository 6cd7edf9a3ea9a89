# A director stops sending new sessions to the servers that the topology no
# longer has, before its new configuration drops them (orch/topology.sls).
orch-drain-retired-servers:
  cluster_lb.retired_drained:
    - wait: 30
