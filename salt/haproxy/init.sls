# HAProxy on the directors: L4 on 80/443, L7 with stickiness on 8000, stats.
include:
  - haproxy.package
  - haproxy.config
  - haproxy.service
