{%- from "firewall/map.jinja" import unit %}

firewall-package-installed:
  pkg.installed:
    - pkgs: {{ unit.packages | json }}
    - refresh: false
