{#-
  Roll out a topology change (an edit of pillar/cluster.sls) while the
  cluster keeps serving:

      salt-run state.orchestrate orch.topology test=True   # the plan
      salt-run state.orchestrate orch.topology

  1. The topology is validated first: an invalid edit names its problems
     and nothing runs anywhere. Then every minion refreshes its pillar.
  2. Both directors learn the new hosts and DHCP leases (dnsmasq re-reads its
     static leases on SIGHUP), so a new node gets its address by MAC.
  3. Every director drains what the topology no longer has (no new sessions,
     then up to 30 s for open ones to end).
  4. The nas's firewall and exports follow the topology (the Salt master and
     the NFS export are for the topology's nodes only): new nodes may mount,
     drained retired ones no longer can.
  5. The nas, DNS and web servers have their highstate, new nodes included:
     a new server is serving before any balancer sends it traffic.
  6. One director at a time, lowest VRRP priority first (the standby): its
     highstate, then it must balance to every server of the topology before
     the next one starts. Both are never reloading at once, and a VIP,
     priority or port change reaches the director holding the VIPs last.
-#}
{%- set problems = salt['cluster.validate']() %}
{%- if problems is not sameas true %}

orch-topology-valid:
  test.fail_without_changes:
    - name: pillar/cluster.sls
    - comment: "The topology is invalid; nothing was changed. {{ problems | join('; ') }}"
{%- else %}
{%- set model = salt['cluster.model']() %}
{%- set ranked = [] %}
{%- for name in model.roles.director %}
{%-   do ranked.append((model.nodes[name].priority, name)) %}
{%- endfor %}
{%- set directors = ranked | sort | map(attribute='1') | list %}
{%- set servers = (model.roles.nas + model.roles.dns + model.roles.web) | unique | list %}

# Module calls read the pillar a minion holds in memory: refresh it
# everywhere first, so every step sees the edited topology.
orch-topology-refresh-pillar:
  salt.function:
    - name: saltutil.refresh_pillar
    - tgt: {{ (directors + servers) | join(',') }}
    - tgt_type: list
    - expect_minions: true
    - kwarg:
        wait: true

orch-topology-directors-hosts-and-leases:
  salt.state:
    - tgt: {{ directors | join(',') }}
    - tgt_type: list
    - expect_minions: true
    - sls:
      - common
      - dnsmasq
    - require:
      - salt: orch-topology-refresh-pillar

orch-topology-directors-drain-retired:
  salt.state:
    - tgt: {{ directors | join(',') }}
    - tgt_type: list
    - expect_minions: true
    - sls:
      - orch.drain_retired
    - require:
      - salt: orch-topology-directors-hosts-and-leases

orch-topology-nas-firewall-and-exports:
  salt.state:
    - tgt: {{ model.roles.nas | join(',') }}
    - tgt_type: list
    - expect_minions: true
    - sls:
      - firewall
      - nfs.server
    - require:
      - salt: orch-topology-directors-drain-retired

orch-topology-servers-highstate:
  salt.state:
    - tgt: {{ servers | join(',') }}
    - tgt_type: list
    - expect_minions: true
    - highstate: true
    - require:
      - salt: orch-topology-nas-firewall-and-exports
{%- set previous = {'id': 'orch-topology-servers-highstate'} %}
{%- for director in directors %}

orch-topology-{{ director }}-highstate:
  salt.state:
    - tgt: {{ director }}
    - expect_minions: true
    - highstate: true
    - require:
      - salt: {{ previous.id }}

orch-topology-{{ director }}-in-rotation:
  salt.function:
    - name: balancer.wait_in_rotation
    - tgt: {{ director }}
    - kwarg:
        timeout: 120
    - require:
      - salt: orch-topology-{{ director }}-highstate
{%-   do previous.update({'id': 'orch-topology-' ~ director ~ '-in-rotation'}) %}
{%- endfor %}
{%- endif %}
