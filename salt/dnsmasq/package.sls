{%- from "dnsmasq/map.jinja" import dnsmasq %}

dnsmasq-package-installed:
  pkg.installed:
    - pkgs: {{ dnsmasq.packages | json }}
    - refresh: false
