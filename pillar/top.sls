# The topology is the same for every minion; secrets are generated locally
# (`make secrets`) and never committed. Without them the formulas that need
# them fail with a clear message.
base:
  '*':
    - cluster
    - secrets
    - ignore_missing: true
