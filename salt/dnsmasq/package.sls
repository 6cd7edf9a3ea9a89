{%- from "dnsmasq/map.jinja" import dnsmasq %}

dnsmasq-package-installed:
  pkg.installed:
    - name: {{ dnsmasq.package }}
    - refresh: false
