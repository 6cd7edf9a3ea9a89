{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache_exporter with context %}

apache_exporter-package-installed:
  pkg.installed:
    - pkgs: {{ apache_exporter.packages | json }}
    - refresh: false
