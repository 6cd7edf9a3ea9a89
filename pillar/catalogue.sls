# The catalogue of roles: what each role runs, and the names other parts of
# the project need to know about each formula. Each of these facts is written
# here only. Readers:
#   - top.sls: each role's formulas;
#   - every formula's map.jinja: its entry under `formulas`, over defaults.yaml
#     (packages, service, the runtime paths other parts read);
#   - pillar/beacons.sls: what a node's cluster_watch beacon watches;
#   - the execution modules: the runtime paths (vip.vrrp_state, haproxy_runtime);
#   - the lab (lab/catalogue.py): the rootfs's packages, the services a node
#     starts with, the page marker its checks and the tests look for.
# Plain YAML (no Jinja), so that tools outside Salt read it as is. Every
# minion gets it (pillar/top.sls).
---
catalogue:
  roles:
    nas:
      formulas: [common, firewall, nfs.server, node_exporter, prometheus, alertmanager]
      # Its daemons are watched too (started again when they stop); nothing
      # else of it.
      watch: {}
    director:
      formulas: [common, firewall, gateway, conntrackd, dnsmasq, keepalived, haproxy, node_exporter]
      # The cluster_watch beacon (_beacons/cluster_watch.py) watches the
      # services of the role's formulas, and these.
      watch: {haproxy: true, vrrp: true}
      # Published in the Salt mine; the reactor refreshes it on every VRRP
      # transition (cluster.react in _runners/cluster.py).
      mine_functions:
        vip.held: []
    web:
      formulas: [common, firewall, apache, node_exporter, apache_exporter]
      watch: {backend: true}
    dns:
      formulas: [common, firewall, bind, node_exporter, bind_exporter]
      watch: {backend: true}

  # Per formula: Debian's packages and service, and the paths that modules,
  # beacons and the lab read too. `oneshot`: a service that loads a
  # configuration and exits (its package leaves it disabled; not watched).
  formulas:
    common:
      packages: [iproute2, iputils-ping, procps, curl, bind9-dnsutils]
    firewall:
      packages: [nftables]
      service: nftables
      oneshot: true
      iptables:
        packages: [iptables]
        service: cluster-firewall
    gateway:
      packages: [iptables]
    conntrackd:
      packages: [conntrackd]
      service: conntrackd
    dnsmasq:
      packages: [dnsmasq]
      service: dnsmasq
    keepalived:
      packages: [keepalived, ipvsadm]
      service: keepalived
      # Each VRRP instance's last state, written by the notify script and
      # read by vip.vrrp_state.
      state_dir: /run/keepalived-cluster
    haproxy:
      packages: [haproxy]
      service: haproxy
      # The admin socket (haproxy_runtime, balancer, the lab's bench).
      socket: /run/haproxy/admin.sock
    apache:
      packages: [apache2, libapache2-mod-php, php-cli, ssl-cert, nfs-common, rsync]
      service: apache2
      # Refreshes a web server's copy of the docroot from the nas's export.
      copy_unit: cluster-docroot-copy
    bind:
      packages: [bind9, bind9-dnsutils]
      service: named
      zone_dir: /var/lib/bind/cluster
    nfs:
      packages: [nfs-kernel-server, rsync]
      service: nfs-server
      # Runs only where the kernel serves NFS (the node's grain
      # cluster_kernel:nfs_server); watched only there.
      kernel: nfs_server
    node_exporter:
      packages: [prometheus-node-exporter]
      service: prometheus-node-exporter
      # Where others drop *.prom files for its textfile collector (the
      # keepalived notify script, the minion_health module).
      textfile_dir: /var/lib/prometheus/node-exporter
    bind_exporter:
      packages: [prometheus-bind-exporter]
      service: prometheus-bind-exporter
    apache_exporter:
      packages: [prometheus-apache-exporter]
      service: prometheus-apache-exporter
    prometheus:
      packages: [prometheus]
      service: prometheus
    alertmanager:
      packages: [prometheus-alertmanager]
      service: prometheus-alertmanager
    webcontent:
      # What the index page prints before the serving node's address: how
      # the lab, the bench and the tests tell who answered.
      server_address_prefix: "Soy el servidor IP: "
      # Marks the top of the cluster's docroot; holds its identity, made once
      # on the nas. A copy is refreshed only from the docroot it came from: an
      # empty export (a nas rebuilt without its data) never empties a copy.
      marker: .cluster-docroot
