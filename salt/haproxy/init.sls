{%- set tplroot = tpldir.split('/')[0] %}
# HAProxy on the directors: L4 on 80/443, L7 with stickiness on 8000, stats.
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
