{#- This minion's cluster_watch beacon (_beacons/cluster_watch.py), from the
    roles the topology gives its ID (opts.id: the ID the master compiles this
    pillar for, never a grain the minion sends) and the catalogue: every
    service of the roles' formulas that runs as a daemon, and each role's
    other watches; and the role's mine functions. A service that needs what
    the node's kernel lacks (its cluster_kernel grain: the minion's word,
    which can only spare its own service the watch) is not watched.
    Rendered as JSON, so no pillar text becomes YAML syntax. #}
{%- import_yaml 'cluster.sls' as topology %}
{%- import_yaml 'catalogue.sls' as catalogue %}
{%- set roles = catalogue.catalogue.roles %}
{%- set formulas = catalogue.catalogue.formulas %}
{%- set node = topology.cluster.nodes[opts.id] %}
{%- set ns = namespace(services=[], watch={}, mine={}) %}
{%- for role in node.roles if role is string and role in roles and roles[role].watch is defined %}
{%-   for formula in roles[role].formulas %}
{%-     set entry = formulas.get(formula.split('.')[0], {}) %}
{%-     set kernel = grains.get('cluster_kernel') %}
{%-     set kernel_has = entry.kernel is not defined or (kernel is mapping and kernel.get(entry.kernel) is sameas true) %}
{%-     if entry.service is defined and not entry.get('oneshot') and kernel_has and entry.service not in ns.services %}
{%-       do ns.services.append(entry.service) %}
{%-     endif %}
{%-   endfor %}
{%-   do ns.watch.update(roles[role].watch) %}
{%-   do ns.mine.update(roles[role].get('mine_functions', {})) %}
{%- endfor %}
{%- set watch = [{'interval': 1}, {'services': ns.services}] %}
{%- for key, value in ns.watch | dictsort %}
{%-   do watch.append({key: value}) %}
{%- endfor %}
{%- set out = dict(beacons=dict(cluster_watch=watch)) %}
{%- if ns.mine %}
{%-   do out.update(dict(mine_functions=ns.mine)) %}
{%- endif %}
{{ out | json }}
