# Change-only beacons (see _beacons/cluster_watch.py) for the web role.
beacons:
  cluster_watch:
    - interval: 1
    - services: [apache2]
    - backend: true
