# Change-only beacons (see _beacons/cluster_watch.py) for the directors:
# their daemons, HAProxy's backend servers and the VRRP states.
beacons:
  cluster_watch:
    - interval: 1
    - services: [haproxy, keepalived, dnsmasq]
    - haproxy: true
    - vrrp: true
# Who holds which VIP, published in the Salt mine (refreshed by the reactor on
# every VRRP transition: cluster.react in _runners/cluster.py).
mine_functions:
  vip.held: []
