{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bind_exporter with context %}

bind_exporter-package-installed:
  pkg.installed:
    - pkgs: {{ bind_exporter.packages | json }}
    - refresh: false
