{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import gateway, model, node with context %}
{%- set outside = node.by_network['external'] %}
{%- set inside_net = model.networks.internal.cidr %}
{%- set outside_vip = model.vips.external[0] %}
# The directors route the internal network out through the external one. The
# servers' default route is the internal VIP, so only the director holding it
# routes their traffic, and their connections leave from the external VIP:
# the peer that takes the VIPs over receives the replies (and, where the
# conntrackd formula runs, knows the bindings).

gateway-package-installed:
  pkg.installed:
    - pkgs: {{ gateway.packages | json }}
    - refresh: false

gateway-sysctl-ip-forward:
  sysctl.present:
    - name: net.ipv4.ip_forward
    - value: 1

gateway-iptables-snat:
  iptables.append:
    - table: nat
    - chain: POSTROUTING
    - source: {{ inside_net }}
    - out-interface: {{ outside }}
    - jump: SNAT
    - to-source: {{ outside_vip }}
    - comment: "cluster gateway: {{ inside_net }} out of {{ outside }} from {{ outside_vip }}"
    - save: false
    - require:
      - pkg: gateway-package-installed

# Earlier releases masqueraded to the director's own address, which a
# connection could not keep across a takeover.
gateway-iptables-masquerade-absent:
  iptables.delete:
    - table: nat
    - chain: POSTROUTING
    - source: {{ inside_net }}
    - out-interface: {{ outside }}
    - jump: MASQUERADE
    - comment: "cluster gateway: {{ inside_net }} out of {{ outside }}"
    - save: false
    - require:
      - pkg: gateway-package-installed
