{%- set tplroot = tpldir.split('/')[0] %}
# Every node's host firewall (nftables), rendered from the cluster model:
# default drop, the published services on the VIPs, and the internal
# services from their clients only.
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
