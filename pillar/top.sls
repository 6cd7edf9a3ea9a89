# The topology is the same for every minion; secrets are generated locally
# (`make secrets`) and never committed. Without them the formulas that need
# them fail with a clear message. Beacons depend on the role.
base:
  '*':
    - cluster
    - secrets
    - ignore_missing: true
  'roles:web':
    - match: grain
    - beacons.web
  'roles:dns':
    - match: grain
    - beacons.dns
  'roles:director':
    - match: grain
    - beacons.director
