# A private PostgreSQL server for the tests (sourced after tests/lib.sh): Debian's initdb and
# pg_ctl in a temporary directory, listening on a Unix socket only, stopped and removed at exit.
#
# PostgreSQL refuses to run as root, so the server runs as nobody in a directory nobody owns
# (outside $WORK, which is root's 0700). Logins need a password (scram-sha-256), which the
# clients read from a password file (PGPASSFILE), never from a command line or the environment:
# the way docs/vmcryptd.md tells operators to give vmcryptd its password.
#
#   pg_start          sets PG_DIR, PG_HOST (the socket directory), PG_USER, PG_BIN, PGPASSFILE
#   pg_uri DB         the --store location of database DB
#   pg_createdb DB    pg_psql [DB] [ARGS...]

pg_bin_dir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

pg_start() {
	PG_BIN=$(pg_bin_dir) || skip_all "needs PostgreSQL's server (Debian package postgresql)"
	command -v psql >/dev/null || skip_all "needs psql (Debian package postgresql-client)"
	command -v runuser >/dev/null || skip_all "needs runuser"
	PG_USER=vmcrypt
	PG_DIR=$(mktemp -d /tmp/vmcrypt-pg.XXXXXX)
	PG_HOST=$PG_DIR/sock
	at_exit "rm -rf '$PG_DIR'"
	mkdir -p "$PG_HOST"
	chmod 0755 "$PG_DIR"
	(umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$PG_DIR/pw")
	chown -R nobody:nogroup "$PG_DIR"
	if ! runuser -u nobody -- "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --pwfile="$PG_DIR/pw" \
		--auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1; then
		cat "$PG_DIR/initdb.log"
		return 1
	fi
	export PGPASSFILE=$WORK/pgpass
	(umask 077; printf '*:*:*:%s:%s\n' "$PG_USER" "$(cat "$PG_DIR/pw")" >"$PGPASSFILE")
	rm -f "$PG_DIR/pw"
	# fsync stays on: the crash tests kill vmcryptd, and an acknowledged write must be on disk.
	# No TCP listener; many short test databases, so a small shared_buffers.
	if ! runuser -u nobody -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
		-o "-k $PG_HOST -c listen_addresses='' -c max_connections=200 -c shared_buffers=32MB" \
		start >/dev/null 2>&1; then
		cat "$PG_DIR/server.log"
		return 1
	fi
	at_exit "runuser -u nobody -- '$PG_BIN/pg_ctl' -D '$PG_DIR/data' -m immediate -w stop"
	export PG_HOST PG_USER PG_BIN PG_DIR
}

pg_uri() { echo "postgresql:///$1?host=$PG_HOST&user=$PG_USER"; }

# pg_psql DB ARGS...: psql on DB, quiet, stopping at the first error.
pg_psql() {
	local db=$1; shift
	psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -U "$PG_USER" -d "$db" "$@"
}

pg_createdb() { pg_psql postgres -c "CREATE DATABASE \"$1\""; }
pg_dropdb() { pg_psql postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)"; }
