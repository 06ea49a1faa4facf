#!/usr/bin/env bash
# t0001: the test bed's registry, TLS registry and sshd answer, and pystrib's
# config show reads the config that points at them, naming where each
# setting came from.
. "$(dirname "$0")/lib.sh"
bed_up registry tls sshd

show=$("$PYSTRIB" -c "$BED_CONFIG" config show)
grep -q "^registry.url = http://$BED_REGISTRY .*; $BED_CONFIG:3\$" <<<"$show" \
	&& ok "config show names the registry and its FILE:LINE" || { fail "registry line"; echo "$show"; }
grep -q "^remote.port = $BED_SSH_PORT .*; $BED_CONFIG:[0-9]*\$" <<<"$show" \
	&& ok "config show names the ssh port and its origin" || fail "remote.port line"
port=$(PYSTRIB_REMOTE_PORT=2 "$PYSTRIB" -c "$BED_CONFIG" config show | grep '^remote.port')
grep -q "environment PYSTRIB_REMOTE_PORT" <<<"$port" && ok "the environment overrides the file" || fail "env override: $port"
named=$("$PYSTRIB" -c "$BED_CONFIG" config get remote.runtime --remote podman)
[ "$named" = podman ] && ok "a named remote selects its own runtime" || fail "named remote: $named"
expect_exit 2 "$PYSTRIB" -c "$BED_CONFIG" config show --remote nosuch

code=$(curl -s -o /dev/null -w '%{http_code}' "http://$BED_REGISTRY/v2/")
[ "$code" = 200 ] && ok "the plain registry answers /v2/" || fail "plain registry: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BED_CA" "https://$BED_TLS_REGISTRY/v2/")
[ "$code" = 401 ] && ok "the TLS registry refuses without credentials" || fail "tls anonymous: $code"
# curl reads the credentials from a config on stdin, not from its command line.
code=$(printf 'user = "%s:%s"\n' "$BED_TLS_USER" "$(cat "$BED_TLS_PASSWORD_FILE")" |
	curl -s -K - -o /dev/null -w '%{http_code}' --cacert "$BED_CA" "https://$BED_TLS_REGISTRY/v2/")
[ "$code" = 200 ] && ok "the TLS registry accepts the bed's credentials, verified by its CA" || fail "tls auth: $code"

out=$(ssh -p "$BED_SSH_PORT" -i "$BED_SSH_KEY" -o BatchMode=yes -o IdentitiesOnly=yes \
	-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BED_KNOWN_HOSTS" \
	"$BED_SSH_USER@$BED_SSH_HOST" 'echo "login $PATH"')
# The session gets the bed's PATH (root's profile may put its own directories
# in front), so Debian's docker client is found, not /usr/local/bin's.
case $out in
"login /usr/bin:/bin:/usr/sbin:/sbin" | "login "*:/usr/bin:/bin:/usr/sbin:/sbin)
	ok "ssh login with the bed key, host key verified" ;;
*) fail "ssh: $out" ;;
esac
: > "$BED_DIR/empty_known_hosts"
if ssh -p "$BED_SSH_PORT" -i "$BED_SSH_KEY" -o BatchMode=yes -o IdentitiesOnly=yes \
	-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BED_DIR/empty_known_hosts" \
	"$BED_SSH_USER@$BED_SSH_HOST" true 2>/dev/null; then
	fail "an unknown host key must be refused"
else
	ok "the bed's host key is not accepted blindly"
fi
