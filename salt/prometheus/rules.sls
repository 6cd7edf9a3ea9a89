{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, prometheus with context %}
{#- Alert rules from the model: availability alerts fire once a failure has
    lasted prometheus.alert_after, capacity alerts after capacity_after. The
    annotations are Prometheus templates ($labels), not Jinja. #}
{%- set after = prometheus.alert_after %}
{%- set node = "{{ $labels.node }}" %}
{%- set vrrp = "sum by (name) (keepalived_vrrp_master{type=\"instance\"})" %}
{%- set near_full = prometheus.near_full | string %}
{#- Series of the model's targets only (each carries its node): Debian's
    package first starts Prometheus with its own configuration, and what
    that scraped of localhost outlives the restart by 5 min, its last
    timestamps growing old. #}
{%- set ours = '{node!=""}' %}
{#- (alert, expression, for, summary) #}
{%- set plain = [
      ("NodeDown", 'up{job="node"} == 0', after, node ~ " does not answer its node exporter"),
      ("ExporterDown", 'up{job!="node"} == 0 unless on (node) up{job="node"} == 0', after,
       node ~ ": the {{ $labels.job }} exporter does not answer"),
      ("ServiceDown", "bind_up == 0 or apache_up == 0", after,
       node ~ ": {{ $labels.job }} does not answer its exporter"),
      ("VIPSplitBrain", vrrp ~ " > 1", after, "more than one director is MASTER of VRRP instance {{ $labels.name }}"),
      ("BackendServerDown", 'haproxy_server_status{state="DOWN"} == 1', after,
       "{{ $labels.server }} is DOWN in {{ $labels.proxy }} on " ~ node),
      ("BackendServerDrained", 'haproxy_server_status{state=~"DRAIN|MAINT"} == 1', prometheus.drained_after,
       "{{ $labels.server }} is drained in {{ $labels.proxy }} on " ~ node),
      ("NFSUnreachable", 'node_filesystem_device_error{fstype=~"nfs4?"} == 1', after,
       node ~ " cannot reach the NFS export {{ $labels.device }}"),
      ("DiskNearFull",
       'node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|nfs4?"} / node_filesystem_size_bytes < ' ~ near_full,
       prometheus.capacity_after, node ~ ": {{ $labels.mountpoint }} is nearly full"),
      ("MemoryNearFull", "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < " ~ near_full,
       prometheus.capacity_after, node ~ " is nearly out of memory"),
      ("MonitoringCutOff", 'count(up{job="node"} == 0) > count(up{job="node"}) / 2', after,
       "the monitoring server reaches fewer than half of the nodes: it is cut off, or most of the cluster is down"),
      ("SaltMinionDisconnected", "salt_minion_master_connected == 0", after,
       node ~ "'s salt-minion reaches no Salt master"),
      ("SaltMinionStopped", "time() - salt_minion_checked_timestamp_seconds" ~ ours ~ " > " ~ prometheus.minion_silent_s,
       after, node ~ "'s salt-minion has not run its schedule for over " ~ prometheus.minion_silent_s ~ " s"),
    ] %}
{%- set rules = [] %}
{%- for alert, expr, for_, summary in plain %}
{%-   set annotations = {"summary": summary} %}
{%-   do rules.append({"alert": alert, "expr": expr, "for": for_, "annotations": annotations}) %}
{%- endfor %}
{#- Each VRRP instance of the model: no director says it is its MASTER
    (also when no director's numbers arrive at all). #}
{%- set leader = model.vrrp.directors.get(model.vrrp.leader) or {} %}
{%- for instance in leader.get("instances", []) %}
{%-   set annotations = {"summary": "no director is MASTER of VRRP instance " ~ instance.name} %}
{#-   (absent() of a comparison keeps no label: the instance is named here.) #}
{%-   set labels = {"name": instance.name} %}
{%-   do rules.append({"alert": "VIPHeldByNone",
                       "expr": 'absent(keepalived_vrrp_master{type="instance",name="%s"} == 1)' | format(instance.name),
                       "for": after, "labels": labels, "annotations": annotations}) %}
{%- endfor %}
{#- Each real server of each IPVS service: out of it on every director. #}
{%- for vs in model.ipvs.virtual_servers %}
{%-   for rs in vs.real_servers %}
{%-     set match = 'local_address="%s",local_port="%s",proto="%s",remote_address="%s"'
          | format(vs.vip, vs.port, vs.protocol | upper, rs.address) %}
{%-     set labels = {"node": rs.name, "service": vs.name} %}
{%-     set annotations = {"summary": rs.name ~ " is out of IPVS service " ~ vs.name} %}
{%-     do rules.append({"alert": "IPVSRealServerOut", "expr": "absent(node_ipvs_backend_weight{" ~ match ~ "} > 0)",
                         "for": after, "labels": labels, "annotations": annotations}) %}
{%-   endfor %}
{%- endfor %}

include:
  - {{ tplroot }}.package

# `promtool check rules` checks the candidate before it replaces the live
# file; the configuration names it (config.sls), a reload loads it.
prometheus-rules-file-managed:
  file.serialize:
    - name: {{ prometheus.rules }}
    - serializer: yaml
    - mode: "0644"
    - check_cmd: promtool check rules
    - dataset:
        groups:
          - name: cluster
            rules: {{ rules | json }}
    - require:
      - pkg: prometheus-package-installed
