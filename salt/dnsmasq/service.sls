{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import dnsmasq with context %}

include:
  - {{ tplroot }}.config

dnsmasq-service-running:
  service.running:
    - name: {{ dnsmasq.service }}
    - enable: true
    - watch:
      - file: dnsmasq-config-file-managed
    # It starts with its static leases: a node asking before they are there
    # would get a pool address.
    - require:
      - file: dnsmasq-config-hosts-managed

dnsmasq-service-reload-leases:
  cmd.run:
    - name: systemctl reload {{ dnsmasq.service }}
    - onchanges:
      - file: dnsmasq-config-hosts-managed
    - require:
      - service: dnsmasq-service-running
