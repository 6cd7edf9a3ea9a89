# Highstate: minions are targeted by their `roles` grain (nas, director, web,
# dns), which must match their node's roles in pillar/cluster.sls. Every SLS
# renders `cluster.model`, so an invalid topology stops the whole run before
# any state executes.
base:
  'roles:nas':
    - match: grain
    - common
    - firewall
    - nfs.server
  'roles:director':
    - match: grain
    - common
    - firewall
    - gateway
    - dnsmasq
    - keepalived
    - haproxy
  'roles:web':
    - match: grain
    - common
    - firewall
    - apache
  'roles:dns':
    - match: grain
    - common
    - firewall
    - bind
