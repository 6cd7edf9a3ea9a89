{%- set tplroot = tpldir.split('/')[0] %}
{%- import_yaml tplroot ~ "/defaults.yaml" as defaults %}
{%- import "cluster/map.jinja" as cluster %}
{%- set content = salt['cluster.settings']('webcontent', defaults.webcontent) %}
{%- set nfs = cluster.model.nfs %}
{%- set node = cluster.node %}
{#- On the NAS the pages go into the export; on a web server that cannot
    mount it, into its local docroot. #}
{%- set target = nfs.export_docroot if 'nas' in node.roles else nfs.docroot %}

webcontent-directory:
  file.directory:
    - name: {{ target }}
    - makedirs: true
    - mode: "0755"

# The docroot's identity, made once: the web servers refresh their copies
# only from the docroot they were copied from (apache formula, nfs.copy).
webcontent-marker:
  file.managed:
    - name: {{ target }}/{{ content.marker }}
    - replace: false
    - mode: "0644"
    - contents: {{ salt['file.read']('/proc/sys/kernel/random/uuid') | trim | json }}
    - require:
      - file: webcontent-directory
{%- for page in content.pages %}

webcontent-page-{{ page }}:
  file.managed:
    - name: {{ target }}/{{ page }}
    - source: salt://{{ tplroot }}/files/{{ page }}.jinja
    - template: jinja
    - mode: "0644"
    - context:
        pi_max_n: {{ content.pi_max_n }}
        server_address_prefix: {{ content.server_address_prefix | json }}
    - require:
      - file: webcontent-directory
{%- endfor %}
