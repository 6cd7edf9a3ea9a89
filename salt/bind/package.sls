{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bind with context %}

bind-package-installed:
  pkg.installed:
    - pkgs: {{ bind.packages | json }}
    - refresh: false
