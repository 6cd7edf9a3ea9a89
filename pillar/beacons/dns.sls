# Change-only beacons (see _beacons/cluster_watch.py) for the dns role.
beacons:
  cluster_watch:
    - interval: 1
    - services: [named]
    - backend: true
