#!/usr/bin/env bash
# Container health check without curl: the runtime image stays free of an HTTP client, so
# bash's /dev/tcp speaks just enough HTTP/1.0 to read the status line of /health/ready.
# The port is the one the service binds from PORT (CIFIX_BIND unset), as the image sets it.
set -euo pipefail
port="${CIFIX_HEALTHCHECK_PORT:-${PORT:-8080}}"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
# The ready handler answers within 2 s (its own database timeout); 4 s is the outer bound.
IFS=' ' read -r -t 4 _ status _ <&3
[ "$status" = "200" ]
