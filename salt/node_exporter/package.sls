{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import node_exporter with context %}

# Without Debian's recommended collectors package (its timers read SMART
# data, apt's state and more, which a cluster node does not report).
node_exporter-package-installed:
  pkg.installed:
    - pkgs: {{ node_exporter.packages | json }}
    - install_recommends: false
    - refresh: false
