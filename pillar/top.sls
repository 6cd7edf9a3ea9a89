{#- Who gets which pillar. The topology and the catalogue of roles are the
    same for every minion, and so is its schedule. The rest is targeted by minion ID, from the roles
    pillar/cluster.sls gives each node: a minion's grains are its own word,
    and a web server that claimed the director role must not receive the
    directors' secrets. Secrets are generated locally (`make secrets`), never
    committed, and go to the directors only (VRRP key, HAProxy stats
    credentials): without them the formulas that need them fail with a clear
    message. Beacons go to the nodes whose roles the catalogue watches. #}
{%- import_yaml 'cluster.sls' as topology %}
{%- import_yaml 'catalogue.sls' as catalogue %}
{%- set roles = catalogue.catalogue.roles %}
{%- set nodes = ((topology or {}).get('cluster') or {}).get('nodes') or {} %}
{%- set ns = namespace(directors=[], watched=[]) %}
{%- for name, node in nodes.items() if node is mapping %}
{%-   set node_roles = node.get('roles') if node.get('roles') is iterable and node.get('roles') is not string else [] %}
{%-   if 'director' in node_roles %}
{%-     do ns.directors.append(name | string) %}
{%-   endif %}
{%-   for role in node_roles if role is string and role in roles and roles[role].watch is defined %}
{%-     if loop.first %}
{%-       do ns.watched.append(name | string) %}
{%-     endif %}
{%-   endfor %}
{%- endfor %}
base:
  '*':
    - cluster
    - catalogue
    - schedule
{%- if ns.directors %}
  {{ ns.directors | join(',') | json }}:
    - match: list
    - secrets
    - ignore_missing: true
{%- endif %}
{%- if ns.watched %}
  {{ ns.watched | join(',') | json }}:
    - match: list
    - beacons
{%- endif %}
