{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import keepalived with context %}

keepalived-package-installed:
  pkg.installed:
    - pkgs: {{ keepalived.packages | json }}
    - refresh: false
