{%- from "firewall/map.jinja" import backend, unit %}
include:
  - firewall.config

# A reload loads the files again: the rules are replaced in one transaction
# and established connections (tracked) go on.
firewall-service-running:
  service.running:
    - name: {{ unit.service }}
    - enable: true
    - reload: true
    - watch:
      - file: firewall-config-file-managed
{%- if backend == 'iptables' %}
      - file: firewall-config-file-v6-managed
      - file: firewall-config-unit-managed
{%- endif %}
