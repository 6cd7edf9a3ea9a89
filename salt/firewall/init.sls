# Every node's host firewall (nftables), rendered from the cluster model:
# default drop, the published services on the VIPs, and the internal
# services from their clients only.
include:
  - firewall.package
  - firewall.config
  - firewall.service
