{%- set tplroot = tpldir.split('/')[0] %}
# bind9 on the DNS servers: the cluster's forward and reverse zones, recursion
# for the listed networks only, through the pillar's forwarders.
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
