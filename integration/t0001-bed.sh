#!/usr/bin/env bash
# t0001: the test bed's registry, TLS registry and sshd answer, and pystrib's
# config show reads the config that points at them, naming where each
# setting came from.
. "$(dirname "$0")/lib.sh"
bed_up registry tls sshd

"$PYSTRIB" -c "$BED_CONFIG" config show > "$BED_DIR/show.out"
check_grep "config show names the registry and its FILE:LINE" \
	"^registry.url = http://$BED_REGISTRY .*; $BED_CONFIG:3\$" "$BED_DIR/show.out"
check_grep "config show names the ssh port and its origin" \
	"^remote.port = $BED_SSH_PORT .*; $BED_CONFIG:[0-9]*\$" "$BED_DIR/show.out"
port=$(PYSTRIB_REMOTE_PORT=2 "$PYSTRIB" -c "$BED_CONFIG" config show | grep '^remote.port')
check "the environment overrides the file" grep -q "environment PYSTRIB_REMOTE_PORT" <<<"$port"
check_eq "a named remote selects its own runtime" podman \
	"$("$PYSTRIB" -c "$BED_CONFIG" config get remote.runtime --remote podman)"
expect_exit 2 "$PYSTRIB" -c "$BED_CONFIG" config show --remote nosuch

check_eq "the plain registry answers /v2/" 200 \
	"$(curl -s -o /dev/null -w '%{http_code}' "http://$BED_REGISTRY/v2/")"
check_eq "the TLS registry refuses without credentials" 401 \
	"$(curl -s -o /dev/null -w '%{http_code}' --cacert "$BED_CA" "https://$BED_TLS_REGISTRY/v2/")"
# curl reads the credentials from a config on stdin, not from its command line.
code=$(printf 'user = "%s:%s"\n' "$BED_TLS_USER" "$(cat "$BED_TLS_PASSWORD_FILE")" |
	curl -s -K - -o /dev/null -w '%{http_code}' --cacert "$BED_CA" "https://$BED_TLS_REGISTRY/v2/")
check_eq "the TLS registry accepts the bed's credentials, verified by its CA" 200 "$code"

login=$(bed_ssh 'echo "login $PATH"')
# The session gets the bed's PATH (root's profile may put its own directories
# in front), so Debian's docker client is found, not /usr/local/bin's.
check "ssh login with the bed key, host key verified" eval \
	'[[ $login == "login /usr/bin:/bin:/usr/sbin:/sbin" || $login == "login "*:/usr/bin:/bin:/usr/sbin:/sbin ]]' ||
	echo "#   got: $login"
: > "$BED_DIR/empty_known_hosts"
check "the bed's host key is not accepted blindly" eval '! ssh -p "$BED_SSH_PORT" -i "$BED_SSH_KEY" \
	-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \
	-o UserKnownHostsFile="$BED_DIR/empty_known_hosts" "$BED_SSH_USER@$BED_SSH_HOST" true'
