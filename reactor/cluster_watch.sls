{#- A cluster_watch beacon event (a service or a VRRP state changed on a
    node): passed as a whole, as data, to the cluster.react runner
    (_runners/cluster.py). A minion's event is only its word, its tag and id
    included; the runner checks it against the topology, has the node the
    event is about confirm it, and only then drains, starts, readies or
    records a transition. It drops anything else, logged and counted
    (salt-run cluster.health). Nothing of the event is rendered as YAML text
    or into a state ID. -#}
reactor-cluster-watch-react:
  runner.cluster.react:
    - args:
      - tag: {{ tag | json }}
      - data: {{ data | json }}
