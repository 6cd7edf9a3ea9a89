{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import conntrackd with context %}

include:
  - {{ tplroot }}.config

# The kernel's connection-tracking netlink interface, which conntrackd reads
# and writes (a module on Debian's kernels).
conntrackd-service-netlink-module:
  kmod.present:
    - name: nf_conntrack_netlink
    - persist: true

conntrackd-service-running:
  service.running:
    - name: {{ conntrackd.service }}
    - enable: true
    - watch:
      - file: conntrackd-config-file-managed
    - require:
      - kmod: conntrackd-service-netlink-module
