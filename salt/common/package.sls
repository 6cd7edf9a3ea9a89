{%- from "common/map.jinja" import common %}

common-package-installed:
  pkg.installed:
    - pkgs: {{ common.packages | json }}
    # Nodes may have no route to a package registry: installing what is
    # already present must not refresh the index.
    - refresh: false
