{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import firewall, backend, unit with context %}
include:
  - {{ tplroot }}.config

# A reload loads the files again: the rules are replaced in one transaction
# and established connections (tracked) go on.
firewall-service-running:
  service.running:
    - name: {{ unit.service }}
    - enable: true
    - reload: true
    - watch:
      - file: firewall-config-file-managed
{%- if backend == 'iptables' %}
      - file: firewall-config-file-v6-managed
      - file: firewall-config-unit-managed
{%- endif %}

{#- At least conntrack_max: a container on a host kernel cannot change it (and
    gets the host's, often larger). The table exists once the rules above
    have loaded connection tracking; Salt raises it again on a highstate after
    a reboot (sysctl.d is read before that). #}
{%- set conntrack_now = salt['sysctl.get']('net.netfilter.nf_conntrack_max') | int %}
{%- if conntrack_now < firewall.conntrack_max | int %}

firewall-sysctl-conntrack-max:
  sysctl.present:
    - name: net.netfilter.nf_conntrack_max
    - value: {{ firewall.conntrack_max }}
    - require:
      - service: firewall-service-running
{%- endif %}
