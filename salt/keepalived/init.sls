{%- set tplroot = tpldir.split('/')[0] %}
# VRRP (floating VIPs in a sync group) and IPVS virtual servers, on the directors.
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
