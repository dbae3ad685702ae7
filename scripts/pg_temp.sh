#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL server on 127.0.0.1 for the tests.
# `start` prints shell exports: DRAFTROOM_TEST_POSTGRES_URL and DRAFTROOM_PG_DIR.
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
run_as=()
if [[ $(id -u) -eq 0 ]]; then run_as=(runuser -u postgres --); fi
case $1 in
start)
  dir=$(mktemp -d /tmp/draftroom-pg.XXXXXX)
  [[ $(id -u) -eq 0 ]] && chown postgres "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${run_as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
  "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
  "${run_as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres draftroom_test
  echo "export DRAFTROOM_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$port/draftroom_test"
  echo "export DRAFTROOM_PG_DIR=$dir"
  ;;
stop)
  "${run_as[@]}" "$bin/pg_ctl" -D "$2/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$2"
  ;;
esac
