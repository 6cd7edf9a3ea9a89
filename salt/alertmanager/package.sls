{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import alertmanager with context %}

alertmanager-package-installed:
  pkg.installed:
    - pkgs: {{ alertmanager.packages | json }}
    - install_recommends: false
    - refresh: false
