{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bootstrap with context %}
{%- set pki = bootstrap.master.pki %}
{#- On each master: accept the minion keys that tools/bootstrap.py read
    from the nodes over SSH (host keys pinned). A pending key under the same
    name is someone else's or the same: either way it goes. -#}
{%- for name in bootstrap.get('minion_keys', {}) | sort %}

bootstrap-accept-{{ name }}-key:
  file.managed:
    - name: {{ pki }}/minions/{{ name }}
    - contents_pillar: bootstrap:minion_keys:{{ name }}
    - mode: "0644"

bootstrap-accept-{{ name }}-pending-removed:
  file.absent:
    - name: {{ pki }}/minions_pre/{{ name }}
    - require:
      - file: bootstrap-accept-{{ name }}-key
{%- endfor %}
