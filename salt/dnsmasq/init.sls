{%- set tplroot = tpldir.split('/')[0] %}
# DHCP (static leases by MAC) and a DNS forwarder for the internal network, on
# the directors.
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
