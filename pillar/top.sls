{#- Who gets which pillar. The topology is the same for every minion. The
    rest is targeted by minion ID, from the roles pillar/cluster.sls gives
    each node: a minion's grains are its own word, and a web server that
    claimed the director role must not receive the directors' secrets.
    Secrets are generated locally (`make secrets`), never committed, and go
    to the directors only (VRRP key, HAProxy stats credentials): without
    them the formulas that need them fail with a clear message. Beacons
    depend on the role. #}
{%- import_yaml 'cluster.sls' as topology %}
{%- set nodes = ((topology or {}).get('cluster') or {}).get('nodes') or {} %}
{%- set ns = namespace(by_role={'director': [], 'web': [], 'dns': []}) %}
{%- for name, node in nodes.items() if node is mapping %}
{%-   for role in (node.get('roles') or []) if role in ns.by_role %}
{%-     do ns.by_role[role].append(name | string) %}
{%-   endfor %}
{%- endfor %}
base:
  '*':
    - cluster
{%- for role, names in ns.by_role | dictsort if names %}
  {{ names | join(',') | json }}:
    - match: list
{%-   if role == 'director' %}
    - secrets
    - ignore_missing: true
{%-   endif %}
    - beacons.{{ role }}
{%- endfor %}
