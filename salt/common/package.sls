{%- from "common/map.jinja" import common, node %}
{%- set wanted = namespace(pkgs=common.packages.all) %}
{%- for role in node.roles %}
{%-   set wanted.pkgs = wanted.pkgs + common.packages.get(role, []) %}
{%- endfor %}

common-package-installed:
  pkg.installed:
    - pkgs: {{ wanted.pkgs | unique | list | json }}
    # Nodes may have no route to a package registry: installing what is
    # already present must not refresh the index.
    - refresh: false
