{%- from "haproxy/map.jinja" import haproxy %}

haproxy-package-installed:
  pkg.installed:
    - name: {{ haproxy.package }}
    - refresh: false
