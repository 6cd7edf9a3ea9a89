# The cluster's topology: the single source of truth.
#
# Every formula renders only what `cluster.model` derives from this file, and
# `cluster.validate` checks it before anything is touched. It is plain YAML (no
# Jinja) so that tools outside Salt, such as the one-host lab, read it as is.
# Secrets (HAProxy stats credentials, VRRP authentication) live in
# pillar/secrets.sls, which is generated and never committed: see README.
---
cluster:
  domain: lab.local

  networks:
    internal:
      cidr: 10.0.100.0/24
      mtu: 9000
      # Dynamic pool handed out by the directors' dnsmasq. Nodes with
      # `dhcp: true` get their address as a static lease by MAC; it may lie
      # inside the pool. Statically configured addresses may not. (The seed's
      # pool, .2-.50, contained the standby's own static .50.)
      dhcp:
        start: 10.0.100.2
        end: 10.0.100.49
        lease_time: infinite
      reverse_zone: 100.0.10.in-addr.arpa
    external:
      cidr: 192.168.1.0/24
      mtu: 1500
      # The "Internet" side: the directors' default gateway. In the lab this
      # is the lab's own upstream node, never a real router.
      gateway: 192.168.1.1

  # Floating addresses, held by whichever director is MASTER.
  vips:
    external: [192.168.1.200, 192.168.1.202]
    internal: [10.0.100.200]

  nodes:
    nas:
      roles: [nas]
      aliases: []
      interfaces:
        eth0: {network: internal, address: 10.0.100.100}
    master:
      roles: [director]
      priority: 150
      aliases: [cluster1, lb1]
      interfaces:
        eth0: {network: external, address: 192.168.1.101}
        eth1: {network: internal, address: 10.0.100.1}
    standby:
      roles: [director]
      priority: 100
      aliases: [lb2]
      interfaces:
        eth0: {network: external, address: 192.168.1.102}
        eth1: {network: internal, address: 10.0.100.50}
    web1:
      roles: [web]
      aliases: [cluster2]
      interfaces:
        eth0: {network: internal, address: 10.0.100.2, mac: "08:00:27:01:01:02", dhcp: true}
    web2:
      roles: [web]
      aliases: [cluster3]
      interfaces:
        eth0: {network: internal, address: 10.0.100.3, mac: "08:00:27:01:01:03", dhcp: true}
    web3:
      roles: [web]
      aliases: [cluster4]
      interfaces:
        eth0: {network: internal, address: 10.0.100.4, mac: "08:00:27:01:01:04", dhcp: true}
    dns1:
      roles: [dns]
      aliases: [cluster5]
      interfaces:
        eth0: {network: internal, address: 10.0.100.5, mac: "08:00:27:01:01:05", dhcp: true}
    dns2:
      roles: [dns]
      aliases: [cluster6]
      interfaces:
        eth0: {network: internal, address: 10.0.100.6, mac: "08:00:27:01:01:06", dhcp: true}
    dns3:
      roles: [dns]
      aliases: [cluster7]
      interfaces:
        eth0: {network: internal, address: 10.0.100.7, mac: "08:00:27:01:01:07", dhcp: true}

  vrrp:
    sync_group: VG1
    # Every instance advertises on the internal network only, whatever network
    # its VIPs are on (the VIPs' interface is tracked): no advert is visible
    # on, or accepted from, the external side. VRRP version 3: adverts every
    # advert_int seconds (0.1: the standby takes over about 0.4 s after the
    # last advert), sent unicast to the peer directors only and accepted from
    # their addresses only (version 3 has no authentication). Version 2:
    # multicast adverts with PASS authentication, whole seconds only.
    version: 3
    advert_int: 0.1
    # Share the IPVS connections with the peer directors (the kernel's sync
    # threads on the internal network, a unit of their own; the firewall
    # opens their port to the peers only when on), so that they survive a
    # takeover and the failback. The NAT gateway's connections are always
    # shared (conntrackd).
    ipvs_sync: true
    instances:
      VI_E: {network: external, virtual_router_id: 51}
      VI_I: {network: internal, virtual_router_id: 52}

  haproxy:
    # Layer 4 on 80/443 (TLS passes through to the web servers), layer 7 on
    # 8000 with cookie stickiness. Stats listen on the internal VIP only.
    frontends:
      http-l4: {vip: 192.168.1.200, port: 80, mode: tcp, backend: web-http-l4}
      https-l4: {vip: 192.168.1.200, port: 443, mode: tcp, backend: web-https-l4}
      http-l7: {vip: 192.168.1.200, port: 8000, mode: http, backend: web-http-l7}
    backends:
      # Layer 4 sends the client's address ahead of each connection (PROXY
      # protocol), to ports of their own on the web servers that accept
      # it from the directors only; tls: the servers speak HTTPS there.
      web-http-l4: {role: web, port: 8081, mode: tcp, proxy_protocol: true}
      web-https-l4: {role: web, port: 8444, mode: tcp, proxy_protocol: true, tls: true}
      # The layer 7 path has its own port on the web servers: only there do
      # they take the client's address from the directors' header.
      web-http-l7: {role: web, port: 8080, mode: http, cookie: SERVERID, check_path: /}
    stats: {vip: 10.0.100.200, port: 7000}

  ipvs:
    # Kernel load balancing: UDP DNS (HAProxy has no UDP) and a TCP web path
    # that keeps the client's own address (NAT, as in the seed).
    virtual_servers:
      dns: {vip: 192.168.1.200, port: 53, protocol: udp, role: dns, scheduler: rr, forwarding: nat}
      # DNS over TCP beside UDP: a truncated answer is asked again over TCP.
      dns-tcp: {vip: 192.168.1.200, port: 53, protocol: tcp, role: dns, scheduler: rr, forwarding: nat}
      web: {vip: 192.168.1.202, port: 80, protocol: tcp, role: web, scheduler: rr, forwarding: nat}

  # The nodes the Salt masters run on. With more than one, every minion
  # knows each of them and is connected to one at a time, the first while it
  # answers (Salt's failover masters, docs/operations.md). Not a director.
  salt_masters: [nas, dns1]

  # Where Prometheus runs (not a director); it scrapes every node's exporters,
  # which the firewalls open to this node only.
  monitoring:
    server: nas

  # true: cluster.validate refuses a single Salt master or a docroot
  # without copies (nfs.copy).
  ha: true

  nfs:
    # nas exports `export`; every web node mounts it at `mountpoint` and
    # serves `docroot` from it. Root on a client is squashed (the seed used
    # no_root_squash).
    export: /srv/nfs/www
    mountpoint: /nfs
    docroot: /nfs/www
    clients: [web]
    # Every client serves its own copy of the docroot, on its own disk,
    # refreshed from the mount every `refresh` seconds (rsync): the site
    # keeps answering while the nas is down, and a client that was down
    # refreshes its copy before Apache starts. Without `copy`, Apache serves
    # the mount itself (as in the seed) and stops answering when the nas
    # does.
    copy: {path: /srv/www, refresh: 5}

  dns:
    # Resolvers that bind forwards to. The lab's upstream node, never a
    # public resolver.
    forwarders: [192.168.1.1]
    # Who may ask for recursion: network names from `networks`, or CIDRs.
    # Anyone may ask for the cluster's own zones; recursion to the Internet
    # side would make an open resolver (cluster.validate refuses any/0/0).
    allow_recursion: [internal]
    ttl: 38400
