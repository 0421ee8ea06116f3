#!/bin/bash
# The whole server suite on the PostgreSQL backend: one private PostgreSQL server (pg-lib.sh),
# then every test-server-*.sh with VMCRYPT_TEST_STORE=postgresql (each in a database of its own)
# and test-store's unit tests on it. Each script's result is one check here, and its own counts
# are printed; a script that skips whole (exit 77) is a skip, with its reason.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/pg-lib.sh"
[ -x "$VMCRYPTD" ] || skip_all "vmcryptd not built in $BUILD"

check "PostgreSQL starts (initdb, pg_ctl; a password file)" pg_start
export VMCRYPT_TEST_STORE=postgresql

# test-store: every store test again on the PostgreSQL backend.
if [ -x "$BUILD/tests/test-store" ]; then
	pg_createdb unit_store
	VMCRYPT_TEST_PG_URI=$(pg_uri unit_store) CMOCKA_MESSAGE_OUTPUT=stdout "$BUILD/tests/test-store" \
		>"$WORK/test-store.log" 2>&1
	rc=$?
	p=$(grep -c '^\[       OK \] postgresql:' "$WORK/test-store.log")
	s=$(grep -c '^\[  SKIPPED \] postgresql:' "$WORK/test-store.log")
	echo "# test-store on PostgreSQL: $p passed, $((s / 2)) skipped (exit $rc)"
	check "test-store on PostgreSQL ($p passed)" test "$rc" = 0 -a "$p" -gt 0
	[ "$rc" = 0 ] || grep -a -E 'FAILED|ERROR|error' "$WORK/test-store.log" | head -n 20 | sed 's/^/#   /'
else
	skip "test-store on PostgreSQL (not built in $BUILD)"
fi

# Every server script, each on a database of its own on this server.
for s in "$TESTS_DIR"/integration/test-server-*.sh; do
	name=$(basename "$s" .sh)
	[ "$name" = test-server-postgresql ] && continue
	log=$WORK/$name.log
	t0=$SECONDS
	bash "$s" >"$log" 2>&1
	rc=$?
	res=$(grep -a '^RESULT ' "$log" | tail -n 1)
	took=$((SECONDS - t0))
	if [ "$rc" = 77 ] && [ -z "$res" ]; then
		skip "$name on PostgreSQL: $(grep -a '^SKIP' "$log" | head -n 1)"
		continue
	fi
	echo "# $name on PostgreSQL: ${res:-no RESULT line} (exit $rc, ${took}s)"
	if [ "$rc" = 0 ] && [[ "$res" == *" failed=0 "* ]]; then
		ok "$name on PostgreSQL"
	else
		not_ok "$name on PostgreSQL (exit $rc)"
		grep -a '^not ok' "$log" | sed 's/^/#   /'
		tail -n 15 "$log" | sed 's/^/#   /'
	fi
	grep -a '^skip' "$log" | sed "s/^/#   $name: /"
done

# FATAL lines are expected (test-server-store-busy ends its lock holder, databases are dropped
# with their connections); a PANIC is PostgreSQL itself failing.
check "PostgreSQL logged no PANIC" test "$(grep -c PANIC "$PG_DIR/server.log")" = 0
finish
