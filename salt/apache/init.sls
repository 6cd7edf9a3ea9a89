# Apache + PHP on the web servers: the shared docroot, remote IPs from the
# directors only, a self-signed certificate per node, HTTP and HTTPS vhosts.
include:
  - apache.package
  - apache.tls
  - apache.docroot
  - apache.config
  - apache.service
