#!/bin/bash
# Entrypoint of the KFP database image (hack/kfp/build-images.sh db): Debian's MariaDB run with the
# arguments KFP's mysql Deployment passes to MySQL 8.4. Runs as the pod's (non-root) user.
set -euo pipefail

datadir=/var/lib/mysql
args=()
while (($#)); do
  case $1 in
    --datadir) datadir=$2 && shift ;;
    --datadir=*) datadir=${1#*=} ;;
    # MySQL 8.4 only: MariaDB's root uses the native password plugin already.
    --authentication-policy=* | --mysql-native-password=*) ;;
    --disable-log-bin) args+=(--skip-log-bin) ;;
    *) args+=("$1") ;;
  esac
  shift
done

if [[ ! -d $datadir/mysql ]]; then
  echo "mariadb-entrypoint: initialising $datadir" >&2
  mariadb-install-db --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve >/dev/null
fi

# Root from any pod, no password (the mysql image's MYSQL_ALLOW_EMPTY_PASSWORD); idempotent.
init=/tmp/mariadb-init.sql
cat >"$init" <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL

exec mariadbd --no-defaults --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 \
  --socket=/tmp/mysqld.sock --pid-file=/tmp/mysqld.pid --skip-name-resolve \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
  --init-file="$init" "${args[@]}"
