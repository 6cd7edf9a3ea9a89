{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import conntrackd with context %}

include:
  - {{ tplroot }}.package

# conntrackd has no configuration check of its own: the file is rendered
# from the model alone, and the service state reports a daemon that does
# not start on it.
conntrackd-config-file-managed:
  file.managed:
    - name: {{ conntrackd.config }}
    - source: salt://{{ tplroot }}/files/conntrackd.conf.jinja
    - template: jinja
    - mode: "0644"
    - context:
        settings: {{ conntrackd | json }}
    - require:
      - pkg: conntrackd-package-installed

# conntrackd shares an entry when its state changes, not at every packet: the
# TCP window a director holds for a connection its peer carried meanwhile is
# stale, and strict window tracking would call the connection's next packets
# INVALID when the VIPs come back (the firewall drops them, the NAT binding
# is not applied). Liberal tracking accepts them; only an out-of-window RST
# is still refused.
conntrackd-config-tcp-be-liberal:
  sysctl.present:
    - name: net.netfilter.nf_conntrack_tcp_be_liberal
    - value: 1
