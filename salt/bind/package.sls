{%- from "bind/map.jinja" import bind %}

bind-package-installed:
  pkg.installed:
    - pkgs: {{ bind.packages | json }}
    - refresh: false
