{%- from "keepalived/map.jinja" import keepalived %}

keepalived-package-installed:
  pkg.installed:
    - pkgs: {{ keepalived.packages | json }}
    - refresh: false
