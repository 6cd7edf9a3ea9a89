{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import gateway, model, node with context %}
{%- set outside = node.by_network['external'] %}
{%- set inside_net = model.networks.internal.cidr %}
# The directors route the internal network out through the external one. The
# servers' default route is the internal VIP, so only the director holding it
# routes their traffic.

gateway-package-installed:
  pkg.installed:
    - pkgs: {{ gateway.packages | json }}
    - refresh: false

gateway-sysctl-ip-forward:
  sysctl.present:
    - name: net.ipv4.ip_forward
    - value: 1

gateway-iptables-masquerade:
  iptables.append:
    - table: nat
    - chain: POSTROUTING
    - source: {{ inside_net }}
    - out-interface: {{ outside }}
    - jump: MASQUERADE
    - comment: "cluster gateway: {{ inside_net }} out of {{ outside }}"
    - save: false
    - require:
      - pkg: gateway-package-installed
