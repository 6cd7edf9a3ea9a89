{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import prometheus with context %}

# Without Debian's recommendation (a node exporter: the node_exporter formula
# runs one with the cluster's settings).
prometheus-package-installed:
  pkg.installed:
    - pkgs: {{ prometheus.packages | json }}
    - install_recommends: false
    - refresh: false
