{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import unit with context %}

firewall-package-installed:
  pkg.installed:
    - pkgs: {{ unit.packages | json }}
    - refresh: false
