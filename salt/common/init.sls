{%- set tplroot = tpldir.split('/')[0] %}
# Base of every node: the role's packages, the host name and /etc/hosts, all
# from the cluster model.
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.hostname
  - {{ tplroot }}.hosts
