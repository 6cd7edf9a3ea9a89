{%- from "firewall/map.jinja" import unit %}

firewall-package-installed:
  pkg.installed:
    - name: {{ unit.package }}
    - refresh: false
