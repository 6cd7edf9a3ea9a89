{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import conntrackd with context %}

conntrackd-package-installed:
  pkg.installed:
    - pkgs: {{ conntrackd.packages | json }}
    - refresh: false
