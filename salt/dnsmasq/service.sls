{%- from "dnsmasq/map.jinja" import dnsmasq %}

include:
  - dnsmasq.config

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
