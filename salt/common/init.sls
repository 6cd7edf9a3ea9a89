# Base of every node: the role's packages, the host name and /etc/hosts, all
# from the cluster model.
include:
  - common.package
  - common.hostname
  - common.hosts
