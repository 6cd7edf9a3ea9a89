{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import keepalived, ipvs_enabled, ipvs_sync with context %}

include:
  - {{ tplroot }}.config

# keepalived re-reads its configuration on SIGHUP (systemctl reload): VRRP
# instances that did not change keep their state and their VIPs. A reload
# also restarts the notify FIFO's reader, so a new one takes over.
keepalived-service-running:
  service.running:
    - name: {{ keepalived.service }}
    - enable: true
    - reload: true
    - watch:
      - file: keepalived-config-file-managed
      - file: keepalived-config-auth-managed
      - file: keepalived-config-notify-script
{%- if ipvs_sync %}

# Started before keepalived at boot; here, restarted when its unit changes.
keepalived-service-ipvs-sync-running:
  service.running:
    - name: {{ keepalived.sync_service }}
    - require:
      - file: keepalived-config-ipvs-sync-wanted
    - watch:
      - file: keepalived-config-ipvs-sync-unit
{%- endif %}
{%- if ipvs_enabled %}
{%- for name, value in keepalived.ipvs_sysctl | dictsort %}

# After keepalived has programmed IPVS (a host kernel loads ip_vs then, and
# its settings appear).
keepalived-service-ipvs-sysctl-{{ name }}:
  sysctl.present:
    - name: net.ipv4.vs.{{ name }}
    - value: {{ value }}
    - require:
      - service: keepalived-service-running
{%- endfor %}
{%- endif %}
