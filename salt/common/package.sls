{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import common with context %}

common-package-installed:
  pkg.installed:
    - pkgs: {{ common.packages | json }}
    # Nodes may have no route to a package registry: installing what is
    # already present must not refresh the index.
    - refresh: false
