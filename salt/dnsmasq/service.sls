{%- from "dnsmasq/map.jinja" import dnsmasq %}

include:
  - dnsmasq.config

dnsmasq-service-running:
  service.running:
    - name: {{ dnsmasq.service }}
    - enable: true
    - watch:
      - file: dnsmasq-config-file-managed

dnsmasq-service-reload-leases:
  cmd.run:
    - name: systemctl reload {{ dnsmasq.service }}
    - onchanges:
      - file: dnsmasq-config-hosts-managed
    - require:
      - service: dnsmasq-service-running
