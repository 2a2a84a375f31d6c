#!/usr/bin/env bash
# The official postgres image's entrypoint contract, for Debian's PostgreSQL (images.py,
# postgres_recipe): on an empty PGDATA, initdb with POSTGRES_USER (default postgres) and
# POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_INITDB_ARGS,
# password authentication for TCP clients (POSTGRES_HOST_AUTH_METHOD, default scram-sha-256),
# POSTGRES_DB (default: the user's name) created, then /docker-entrypoint-initdb.d's *.sh (run if
# executable, else sourced), *.sql and *.sql.gz run in order against a server on the socket only.
# POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB and POSTGRES_INITDB_ARGS may come from a file
# instead (POSTGRES_PASSWORD_FILE, ...), read before the server's user is taken on. Started as
# root, it gives PGDATA to postgres and runs as postgres (uid 999).
set -Eeo pipefail

# file_env NAME [DEFAULT]: NAME from $NAME or from the file $NAME_FILE names, not both.
file_env() {
	local name="$1" file_name="${1}_FILE" value="${2:-}"
	if [ "${!name:-}" ] && [ "${!file_name:-}" ]; then
		echo >&2 "error: both $name and $file_name are set (they are exclusive): unset one"
		exit 1
	fi
	if [ "${!name:-}" ]; then
		value="${!name}"
	elif [ "${!file_name:-}" ]; then
		value="$(<"${!file_name}")"
	fi
	export "$name"="$value"
	unset "$file_name"
}

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi
if [ "$1" != 'postgres' ]; then
	exec "$@"
fi
for argument in "$@"; do  # a question to postgres, not a server to start
	case "$argument" in -V | --version | --help | -\? | --describe-config | -C) exec "$@" ;; esac
done

# As root: a Secret's file may be readable by root only.
file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA"
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
		cat >&2 <<-'EOM'
			Error: Database is uninitialized and superuser password is not specified.
			       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value for
			       the superuser, or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections
			       without a password (not recommended).
		EOM
		exit 1
	fi
	mkdir -p "$PGDATA"
	chmod 700 "$PGDATA" 2>/dev/null || :
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

	# A server for the init scripts only: on the socket, no TCP; clients find it there.
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
	unset PGHOST PGHOSTADDR
	export PGPASSWORD="$POSTGRES_PASSWORD"
	psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				echo "$0: running $f"
				"$f"
			else
				echo "$0: sourcing $f"
				. "$f"
			fi
			;;
		*.sql) echo "$0: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
		*.sql.gz) echo "$0: running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
		*/\*) ;; # the directory is empty
		*) echo "$0: ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	unset PGPASSWORD
	echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
