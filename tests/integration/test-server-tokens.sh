#!/bin/bash
# Named tokens through vmcrypt-admin: `token create NAME --role R` prints the token once, on
# stdout only; `token list` shows names, roles, created, last used and revoked, never a token;
# `token revoke NAME` makes it fail like a wrong one. Creation and revocation take the admin token
# or an admin-role token and are audited, like each token's use; the token's text is nowhere in
# the store, the log or the audit trail. The store gets schema version 4 (test-store.c migrates
# one of version 3).
. "$(dirname "$0")/server-lib.sh"
require_store_sql

check "start" start_server --auth-free-failures 1000
auth_file admin "$DATA/admin.token"
check "VM A" new_vm vma

# --- create ---
(umask 077; admin token create alice --role reader >"$WORK/alice.tok" 2>"$WORK/alice.err")
check_eq "token create: exit 0" 0 "$?"
check "  ... the token alone on stdout" grep -Eqx 'vmc-named-[0-9a-f]{32}-[0-9a-f]{64}' "$WORK/alice.tok"
check_eq "  ... one line" 1 "$(wc -l <"$WORK/alice.tok")"
check_contains "  ... stderr says what it is, and that it is shown once" "Token 'alice' with the reader role created. Its text is shown only now" "$(cat "$WORK/alice.err")"
check "  ... and not the token" not_contains "$(cut -d- -f4 "$WORK/alice.tok")" "$(cat "$WORK/alice.err")"
(umask 077; admin token create bob --role operator >"$WORK/bob.tok" 2>/dev/null)
(umask 077; admin token create root2 --role admin >"$WORK/root2.tok" 2>/dev/null)
admin token create alice --role admin >/dev/null 2>"$WORK/err"
check_eq "a name taken: exit 4 (409)" 4 "$?"
check_contains "  ... saying so" "a token named 'alice' exists" "$(cat "$WORK/err")"
admin token create carol --role root >/dev/null 2>"$WORK/err"
check_eq "an unknown role: exit 2, nothing sent" 2 "$?"
check_contains "  ... naming the roles" "--role must be metrics, reader, operator or admin" "$(cat "$WORK/err")"
admin token create carol >/dev/null 2>"$WORK/err"
check_eq "no --role: exit 2" 2 "$?"
check "  ... and no carol made" not_contains "carol" "$(admin token list)"

# vmcrypt-admin with a named token: as-alice, as-bob, as-root2.
as() { "$VMCRYPT_ADMIN" --server "https://$ADDR" --ca-file "$DATA/tls.crt" --token-file "$WORK/$1.tok" "${@:2}"; }
check "reader: vm list" as alice vm list
as alice vm register nope >/dev/null 2>"$WORK/err"
check_eq "reader: vm register refused, exit 13 (403)" 13 "$?"
check_contains "  ... naming both roles" "HTTP 403): this route needs the operator role; token 'alice' has reader" "$(cat "$WORK/err")"
check "operator: vm register" as bob vm register opvm >/dev/null 2>&1
as bob key create kb >/dev/null 2>"$WORK/err"
check_eq "operator: key create refused (403)" 13 "$?"
check_contains "  ... saying it needs the admin role" "needs the admin role; token 'bob' has operator" "$(cat "$WORK/err")"
as bob token create eve --role admin >/dev/null 2>"$WORK/err"
check_eq "operator: token create refused (403)" 13 "$?"
as alice token revoke bob >/dev/null 2>"$WORK/err"
check_eq "reader: token revoke refused (403)" 13 "$?"
(umask 077; as root2 token create dave --role reader >"$WORK/dave.tok" 2>/dev/null)
check_eq "admin-role token: token create" 0 "$?"

# --- list ---
out=$(as alice token list)
check "list (as a reader): alice, reader, used" grep -Eq '^alice +reader +[0-9T:Z-]+ +[0-9T:Z-]+ +-$' <<<"$out"
check "  ... dave never used" grep -Eq '^dave +reader +[0-9T:Z-]+ +never +-$' <<<"$out"
check "  ... bob, operator" grep -Eq '^bob +operator ' <<<"$out"
check "  ... root2, admin" grep -Eq '^root2 +admin ' <<<"$out"
json=$(admin --json token list)
check_contains "--json: lastUsed null for dave" '"lastUsed": null' "$json"
for t in alice bob root2 dave; do
	check "list: no text of $t's token" not_contains "$(cut -d- -f4 "$WORK/$t.tok")" "$out$json"
	check "  ... nor its id" not_contains "$(cut -d- -f3 "$WORK/$t.tok")" "$out$json"
done

# --- revoke ---
auth_file alice "$WORK/alice.tok"
api GET /v1/admin/vms "$WORK/alice.hdr"
check_eq "alice reads before revocation: 200" 200 "$STATUS"
out=$(admin token revoke alice)
check_eq "token revoke: exit 0" 0 "$?"
check_contains "  ... says so" "Token 'alice' revoked at" "$out"
api GET /v1/admin/vms "$WORK/alice.hdr"
check_eq "alice after revocation: 401" 401 "$STATUS"
revoked_body=$BODY
(umask 077; printf 'vmc-named-%s-%064d\n' "$(cut -d- -f3 "$WORK/alice.tok")" 0 >"$WORK/wrong.tok")
auth_file wrong "$WORK/wrong.tok"
api GET /v1/admin/vms "$WORK/wrong.hdr"
check_eq "  ... exactly as a wrong secret for her id" "401 $BODY" "$STATUS $revoked_body"
as alice vm list >/dev/null 2>"$WORK/err"
check_eq "  ... vmcrypt-admin with it: exit 13" 13 "$?"
check_contains "  ... invalid credential" "HTTP 401): invalid credential" "$(cat "$WORK/err")"
check "revoked in the list" grep -Eq '^alice +reader +[0-9T:Z-]+ +[0-9T:Z-]+ +[0-9T:Z-]+$' <<<"$(admin token list)"
admin token revoke alice >/dev/null 2>"$WORK/err"
check_eq "revoke again: exit 4 (409)" 4 "$?"
check_contains "  ... already revoked" "token 'alice' is already revoked" "$(cat "$WORK/err")"
admin token revoke nobody >/dev/null 2>"$WORK/err"
check_eq "revoke an unknown name: exit 13 (404)" 13 "$?"
check_contains "  ... saying where to look" "no token named 'nobody'; see \`vmcrypt-admin token list\`" "$(cat "$WORK/err")"
check "an admin-role token revokes too" as root2 token revoke dave
admin token create alice --role reader >/dev/null 2>&1
check_eq "a revoked token keeps its name" 4 "$?"

# --- the audit trail: creation, revocation, use ---
out=$(admin audit)
check "token.create of alice by admin, with the role" grep -Eq 'admin +127\.0\.0\.1 +token\.create +token/alice +ok: role reader' <<<"$out"
check "token.create of dave by root2" grep -Eq 'token:root2 +127\.0\.0\.1 +token\.create +token/dave +ok: role reader' <<<"$out"
check "token.revoke of alice" grep -Eq 'admin +127\.0\.0\.1 +token\.revoke +token/alice +ok' <<<"$out"
check "token.revoke of dave by root2" grep -Eq 'token:root2 +127\.0\.0\.1 +token\.revoke +token/dave +ok' <<<"$out"
check "a use: bob's vm.register under his name" grep -Eq 'token:bob +127\.0\.0\.1 +vm\.register +vm/opvm +ok' <<<"$out"
check_contains "a use refused: alice's register" "denied: this route needs the operator role; token 'alice' has reader" "$out"
check_contains "a use of the revoked token" "denied: invalid credential (token 'alice', revoked)" "$out"
check_contains "a refused create" "token:bob" "$(admin audit --result denied)"

# --- never in clear: store, log, audit ---
for t in alice bob root2 dave; do secret_pattern "$WORK/leak" "$(cut -d- -f4 "$WORK/$t.tok")"; done
check "no named token's text in the log" no_leak "$WORK/leak" "$WORK/vmcryptd.log"
check "  ... nor in the database files" no_leak "$WORK/leak" $(store_files)
check "  ... nor in the audit trail" no_leak "$WORK/leak" <(admin --json audit)
check_eq "the store keeps a SHA-256 of bob's token" \
	"$(tr -d '\n' <"$WORK/bob.tok" | sha256sum | cut -d' ' -f1)" \
	"$(if [ "$STORE_KIND" = sqlite ]; then store_sql "SELECT lower(hex(hash)) FROM tokens WHERE name = 'bob'"
	else store_sql "SELECT encode(hash, 'hex') FROM tokens WHERE name = 'bob'"; fi)"
check_eq "schema version 4" 4 "$(store_sql 'SELECT MAX(version) FROM schema_version')"

# Tokens survive a restart, kill -9 too; a revocation too.
stop_server KILL
check "restart after kill -9" start_server --auth-free-failures 1000
check "bob still works" as bob vm list
as alice vm list >/dev/null 2>&1
check_eq "alice is still revoked" 13 "$?"
stop_server TERM
check_eq "clean stop" 0 "$SERVER_RC"
finish
