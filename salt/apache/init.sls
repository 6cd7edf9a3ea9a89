{%- set tplroot = tpldir.split('/')[0] %}
# Apache + PHP on the web servers: the shared docroot (served from a copy on
# the node's disk), remote IPs from the directors only, a self-signed
# certificate per node, HTTP and HTTPS vhosts.
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.tls
  - {{ tplroot }}.docroot
  - {{ tplroot }}.copy
  - {{ tplroot }}.config
  - {{ tplroot }}.service
