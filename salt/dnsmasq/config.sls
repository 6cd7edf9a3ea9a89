{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import dnsmasq, model, node with context %}

include:
  - {{ tplroot }}.package

# The main configuration: checked by dnsmasq itself before it replaces the
# live file. Changes here need a restart.
dnsmasq-config-file-managed:
  file.managed:
    - name: {{ dnsmasq.config }}
    - source: salt://{{ tplroot }}/files/cluster.conf.jinja
    - template: jinja
    - mode: "0644"
    - check_cmd: dnsmasq --test -C
    - context:
        hosts_file: {{ dnsmasq.hosts_file }}
        lease_file: {{ dnsmasq.lease_file }}
    - require:
      - pkg: dnsmasq-package-installed

# Static leases live in a hosts file that dnsmasq re-reads on SIGHUP, so
# adding or removing a node never restarts the DHCP server.
dnsmasq-config-hosts-managed:
  file.managed:
    - name: {{ dnsmasq.hosts_file }}
    - source: salt://{{ tplroot }}/files/dhcp-hosts.jinja
    - template: jinja
    - mode: "0644"
    - makedirs: true
    - require:
      - pkg: dnsmasq-package-installed
