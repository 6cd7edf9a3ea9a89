{%- from "haproxy/map.jinja" import haproxy %}

haproxy-package-installed:
  pkg.installed:
    - pkgs: {{ haproxy.packages | json }}
    - refresh: false
