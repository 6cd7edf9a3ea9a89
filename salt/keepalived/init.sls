# VRRP (floating VIPs in a sync group) and IPVS virtual servers, on the directors.
include:
  - keepalived.package
  - keepalived.config
  - keepalived.service
