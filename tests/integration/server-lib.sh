# Helpers for vmcryptd's integration tests (sourced by test-server-*.sh): start and stop a private
# vmcryptd on a loopback port chosen by the kernel, call its API with curl (tokens and secrets go
# through files, never the command line) and through vmcrypt-admin.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_cmd curl base64
[ -x "$VMCRYPTD" ] && [ -x "$VMCRYPT_ADMIN" ] || skip_all "vmcryptd or vmcrypt-admin not built in $BUILD"

DATA=$WORK/data
SERVER_PID=
ADDR=

# The store: SQLite in $DATA by default; VMCRYPT_TEST_STORE=postgresql gives the script a database
# of its own on the PostgreSQL that test-server-postgresql.sh started (PG_HOST set), or on one
# started here for this script alone. start_server passes STORE_ARGS.
STORE_KIND=${VMCRYPT_TEST_STORE:-sqlite}
STORE_ARGS=()
case $STORE_KIND in
sqlite) ;;
postgresql)
	. "$(dirname "${BASH_SOURCE[0]}")/pg-lib.sh"
	[ -n "${PG_HOST:-}" ] || pg_start || exit 1
	PG_DB=vmcrypt_$(basename "$0" .sh | tr -c 'a-z0-9\n' _)_$$
	pg_createdb "$PG_DB" || exit 1
	# Registered before any start_server, so it runs after vmcryptd is killed.
	at_exit "pg_dropdb '$PG_DB'"
	STORE_ARGS=(--store "$(pg_uri "$PG_DB")")
	;;
*) skip_all "VMCRYPT_TEST_STORE=$STORE_KIND: sqlite or postgresql" ;;
esac

# store_sql SQL: runs SQL on the store beside vmcryptd (to back-date or damage rows); prints the
# rows, columns separated by '|'. The SQL must suit the backend ($STORE_KIND).
store_sql() {
	if [ "$STORE_KIND" = postgresql ]; then
		pg_psql "$PG_DB" -t -A -c "$1"
	else
		sqlite3 "$DATA/vmcryptd.db" "$1"
	fi
}

# require_store_sql: skips the script without the client store_sql needs.
require_store_sql() { [ "$STORE_KIND" = postgresql ] || require_cmd sqlite3; }

# store_files: every file that holds the store's bytes on disk (for the never-in-clear checks):
# SQLite's database and WAL, or the PostgreSQL cluster's tables and WAL.
store_files() {
	if [ "$STORE_KIND" = postgresql ]; then
		find "$PG_DIR/data/base" "$PG_DIR/data/global" "$PG_DIR/data/pg_wal" -type f
	else
		ls "$DATA"/vmcryptd.db*
	fi
}

# start_server [OPTIONS...]: starts vmcryptd on 127.0.0.1:0 with $DATA and waits until it serves.
start_server() {
	rm -f "$DATA/vmcryptd.listen"
	"$VMCRYPTD" --data-dir "$DATA" --listen 127.0.0.1:0 "${STORE_ARGS[@]}" "$@" >>"$WORK/vmcryptd.log" 2>&1 &
	SERVER_PID=$!
	at_exit "kill -9 $SERVER_PID"
	local i
	for ((i = 0; i < 200; i++)); do
		if [ -s "$DATA/vmcryptd.listen" ]; then
			ADDR=$(cat "$DATA/vmcryptd.listen")
			return 0
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "vmcryptd did not start:"; cat "$WORK/vmcryptd.log"
	return 1
}

# stop_server [SIGNAL]: signals vmcryptd (default TERM) and waits; its exit status goes to SERVER_RC.
stop_server() {
	kill -"${1:-TERM}" "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" 2>/dev/null
	SERVER_RC=$?
}

# not_contains NEEDLE HAYSTACK: for check, passes when NEEDLE is absent.
not_contains() { [[ "$2" != *"$1"* ]]; }

admin() {
	"$VMCRYPT_ADMIN" --server "https://$ADDR" --ca-file "$DATA/tls.crt" --token-file "$DATA/admin.token" "$@"
}

# auth_file NAME TOKEN-FILE: writes a curl header file $WORK/NAME.hdr from a file holding a token.
auth_file() {
	(umask 077; printf 'Authorization: Bearer %s\n' "$(head -n 1 "$2")" >"$WORK/$1.hdr")
}

# api METHOD PATH AUTH [BODY]: AUTH is a header file or "-" for none. Sets STATUS and BODY.
# The request body travels through a file, so secrets never appear in a process's arguments.
api() {
	local method=$1 path=$2 auth=$3
	local args=(-sS --cacert "$DATA/tls.crt" -o "$WORK/resp" -w '%{http_code}' -X "$method")
	[ "$auth" = - ] || args+=(-H "@$auth")
	if [ $# -ge 4 ]; then
		(umask 077; printf '%s' "$4" >"$WORK/req")
		args+=(-H 'Content-Type: application/json' --data-binary "@$WORK/req")
	fi
	STATUS=$(curl "${args[@]}" "https://$ADDR$path" 2>"$WORK/curl.err")
	BODY=$(cat "$WORK/resp" 2>/dev/null)
}

# json_field NAME: the first string value of "NAME" in $BODY (compact JSON from vmcryptd).
json_field() {
	sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" <<<"$BODY" | head -n 1
}

# new_vm NAME: registers NAME with vmcrypt-admin and enrolls it; leaves its credential header in
# $WORK/NAME.hdr and its credential in $WORK/NAME.cred.
new_vm() {
	admin vm register "$1" >"$WORK/$1.enroll" 2>/dev/null || return 1
	auth_file "$1.enroll" "$WORK/$1.enroll"
	api POST /v1/enroll "$WORK/$1.enroll.hdr" "{\"hostname\":\"host-$1\",\"agentVersion\":\"test-1\"}"
	[ "$STATUS" = 200 ] || { echo "enroll $1: $STATUS $BODY"; return 1; }
	(umask 077; json_field credential >"$WORK/$1.cred")
	auth_file "$1" "$WORK/$1.cred"
}

# b64 TEXT: base64 of TEXT without line breaks.
b64() { printf '%s' "$1" | base64 -w 0; }

# report VM OS DATA [SEQ] [MESSAGE]: posts a status report as VM.
report() {
	local seq=${4:+,\"SequenceVersion\":$4}
	api POST /v1/vm/status "$WORK/$1.hdr" \
		"{\"OsVolumeEncrypted\":\"$2\",\"DataVolumesEncrypted\":\"$3\",\"ProgressMessage\":\"${5:-test}\"$seq}"
}

# no_leak PATTERN-FILE FILE...: passes when none of the fixed strings in PATTERN-FILE (one a line)
# occurs in any FILE. Patterns stay in a file: secrets never go on a command line.
no_leak() {
	local patterns=$1; shift
	! cat "$@" | grep -a -q -F -f "$patterns"
}

# secret_pattern FILE TEXT: appends TEXT to the pattern file FILE (mode 0600).
secret_pattern() { (umask 077; printf '%s\n' "$2" >>"$1"); }

# luks2_header FILE [KEYSLOTS-SIZE]: writes a real LUKS2 header to FILE, as a VM's agent uploads
# one: `cryptsetup luksFormat --header` on a scratch data file (no device-mapper needed), 16 MiB
# with cryptsetup's defaults, or a 16 KiB metadata area and KEYSLOTS-SIZE (e.g. 1m) of keyslots.
# Each call makes a new UUID and salts, so two headers never have the same SHA-256.
luks2_header() {
	local sizes=()
	[ -z "${2:-}" ] || sizes=(--luks2-metadata-size 16k --luks2-keyslots-size "$2")
	rm -f "$1"
	[ -s "$WORK/luks2.key" ] || (umask 077; head -c 32 /dev/urandom >"$WORK/luks2.key")
	[ -e "$WORK/luks2.data" ] || truncate -s 4M "$WORK/luks2.data"
	cryptsetup luksFormat -q --type luks2 --header "$1" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
		"${sizes[@]}" --key-file "$WORK/luks2.key" "$WORK/luks2.data" 2>/dev/null
}
