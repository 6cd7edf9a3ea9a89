# DHCP (static leases by MAC) and a DNS forwarder for the internal network, on
# the directors.
include:
  - dnsmasq.package
  - dnsmasq.config
  - dnsmasq.service
