{#- Highstate: minions are targeted by their `roles` grain (nas, director,
    web, dns), which must match their node's roles in pillar/cluster.sls.
    Each role's formulas come from the catalogue of roles. Every SLS renders
    `cluster.model`, so an invalid topology stops the whole run before any
    state executes. #}
{%- import_yaml "pillar/catalogue.sls" as catalogue %}
base:
{%- for role, spec in catalogue.catalogue.roles | dictsort %}
  'roles:{{ role }}':
    - match: grain
{%-   for formula in spec.formulas %}
    - {{ formula }}
{%-   endfor %}
{%- endfor %}
