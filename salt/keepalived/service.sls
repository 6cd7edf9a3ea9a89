{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import keepalived, ipvs_enabled, ipvs_sync with context %}

include:
  - {{ tplroot }}.config

# keepalived re-reads its configuration on SIGHUP (systemctl reload): VRRP
# instances that did not change keep their state and their VIPs. A reload
# also restarts the notify FIFO's reader, so a new one takes over. Through
# keepalived-reload, which bounds the wait for the reload to end (a
# keepalived that lost count of its children is restarted). A keepalived
# that is not running yet starts with the new configuration instead.
keepalived-service-reloaded:
  cmd.run:
    - name: {{ keepalived.reload_script }} {{ keepalived.service }} {{ keepalived.reload_timeout }}
    - onlyif: systemctl is-active --quiet {{ keepalived.service }}
    - onchanges:
      - file: keepalived-config-file-managed
      - file: keepalived-config-auth-managed
      - file: keepalived-config-notify-script
    - require:
      - file: keepalived-config-reload-script

# systemd reads the realtime drop-in before keepalived next starts.
keepalived-service-realtime-dropin-loaded:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: keepalived-config-realtime-dropin

keepalived-service-running:
  service.running:
    - name: {{ keepalived.service }}
    - enable: true
    - require:
      - cmd: keepalived-service-reloaded
      - cmd: keepalived-service-realtime-dropin-loaded
      - file: keepalived-config-realtime-script

# A running keepalived whose VRRP or checker process is not realtime (it
# started before the drop-in, or keepalived started a dead child again)
# gets it now, without the restart that would hand the VIPs over.
keepalived-service-realtime-applied:
  cmd.run:
    - name: {{ keepalived.realtime_script }}
    - unless: {{ keepalived.realtime_script }} --check
    - require:
      - file: keepalived-config-realtime-script
      - service: keepalived-service-running

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
