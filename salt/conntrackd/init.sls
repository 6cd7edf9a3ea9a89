{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import node with context %}
# conntrackd on the directors: the connection tracker's entries (the NAT
# gateway's bindings above all) go to the peer directors as they change, so
# a connection through the gateway outlives a takeover and the failback. A
# lone director has no peer to share them with.
{%- if node.vrrp and node.vrrp.state_sync %}
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
{%- endif %}
