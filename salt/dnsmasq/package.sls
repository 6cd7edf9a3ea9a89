{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import dnsmasq with context %}

dnsmasq-package-installed:
  pkg.installed:
    - pkgs: {{ dnsmasq.packages | json }}
    - refresh: false
