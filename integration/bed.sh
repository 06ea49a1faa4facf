#!/usr/bin/env bash
# The test bed: the real services pystrib talks to, started on loopback in a
# directory of their own, and stopped again. Several beds can run at once.
#
#   integration/bed.sh start DIR [SERVICES...]   registry tls sshd docker podman base slurm hosts
#                                                (default: all but slurm and hosts)
#   integration/bed.sh stop DIR                  stops everything started in DIR; idempotent
#
# DIR/env (sourced by tests) says where each service listens; DIR/pystrib.ini
# is a pystrib config pointing at them. See ../shared/ENVIRONMENT.md for why
# each service is started the way it is.
set -euo pipefail

PY=/usr/bin/python3
BASE_PACKAGES="python3,openmpi-bin,python3-mpi4py,python3-numpy,procps"
CACHE=${PYSTRIB_BED_CACHE:-/var/cache/pystrib-bed}

die() { echo "bed: $*" >&2; exit 1; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
envline() { printf '%s=%q\n' "$1" "$2" >> "$DIR/env"; export "$1=$2"; }

# wait_for SECONDS LOGFILE COMMAND...: polls until COMMAND succeeds.
wait_for() {
	local secs=$1 log=$2
	shift 2
	for _ in $(seq $((secs * 10))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "bed: timed out waiting for: $*" >&2
	[ -f "$log" ] && tail -n 20 "$log" >&2
	return 1
}

start_registry() {	# start_registry NAME PORT EXTRA_YAML
	local name=$1 port=$2 extra=$3
	mkdir -p "$DIR/$name/data"
	cat > "$DIR/$name/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $DIR/$name/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$extra
EOF
	setsid docker-registry serve "$DIR/$name/config.yml" > "$DIR/$name/registry.log" 2>&1 < /dev/null &
	echo $! > "$DIR/$name.pid"
}

svc_registry() {
	local port
	port=$(free_port)
	start_registry registry "$port" ""
	wait_for 60 "$DIR/registry/registry.log" curl -sf "http://127.0.0.1:$port/v2/" || return 1
	envline BED_REGISTRY "127.0.0.1:$port"
	envline BED_REGISTRY_LOG "$DIR/registry/registry.log"
}

svc_tls() {
	local port d=$DIR/tls
	port=$(free_port)
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pystrib bed CA" \
		-keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$d/san.ext"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 2 -extfile "$d/san.ext" -out "$d/server.crt" 2>/dev/null
	# A fresh random password, kept in a file (mode 600), never on a command line.
	(umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$d/password")
	htpasswd -B -i -c "$d/htpasswd" pystrib < "$d/password" 2>/dev/null
	start_registry tls "$port" "  tls:
    certificate: $d/server.crt
    key: $d/server.key
auth:
  htpasswd:
    realm: pystrib-bed
    path: $d/htpasswd"
	wait_for 60 "$d/registry.log" sh -c \
		"curl -s -o /dev/null -w '%{http_code}' --cacert '$d/ca.crt' https://127.0.0.1:$port/v2/ | grep -q 401" ||
		return 1
	envline BED_TLS_REGISTRY "127.0.0.1:$port"
	envline BED_TLS_USER pystrib
	envline BED_TLS_PASSWORD_FILE "$d/password"
	envline BED_CA "$d/ca.crt"
	envline BED_TLS_REGISTRY_LOG "$d/registry.log"
}

svc_docker() {
	local d=$DIR/docker
	mkdir -p "$d/data" "$d/exec"
	local driver=overlay2
	for attempt in overlay2 vfs; do
		driver=$attempt
		setsid dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
			-H "unix://$d/docker.sock" --iptables=false --ip6tables=false --bridge=none \
			--storage-driver="$driver" --exec-opt native.cgroupdriver=cgroupfs \
			--default-ulimit nofile=1024:1024 > "$d/dockerd.log" 2>&1 < /dev/null &
		echo $! > "$DIR/docker.pid"
		if wait_for 30 "$d/dockerd.log" /usr/bin/docker -H "unix://$d/docker.sock" version; then
			break
		fi
		kill "$(cat "$DIR/docker.pid")" 2>/dev/null || true
		sleep 1
		[ "$attempt" = vfs ] && die "dockerd did not start"
	done
	envline BED_DOCKER_HOST "unix://$d/docker.sock"
	envline BED_DOCKER_DRIVER "$driver"
}

svc_podman() {
	local d=$DIR/podman
	mkdir -p "$d/root" "$d/run"
	cat > "$d/containers.conf" <<EOF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
EOF
	cat > "$d/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$d/root"
runroot = "$d/run"
EOF
	envline BED_CONTAINERS_CONF "$d/containers.conf"
	envline BED_CONTAINERS_STORAGE_CONF "$d/storage.conf"
	CONTAINERS_CONF="$d/containers.conf" CONTAINERS_STORAGE_CONF="$d/storage.conf" \
		podman info > "$d/info.log" 2>&1 || { tail -n 20 "$d/info.log" >&2; die "podman does not work"; }
}

# Slurm: munge, slurmctld and two slurmd nodes, n1 and n2, on this machine
# (ENVIRONMENT.md): both nodes on 127.0.0.1 with ports of their own, a
# spool and a TmpFS per node (PMIx's appdirs collide without), 2 CPUs each
# whatever the machine has (config_overrides), no accounting. Clients find
# it through SLURM_CONF (sshd passes it on to its sessions), munge's socket
# through AuthInfo.
write_slurm_conf() {	# write_slurm_conf DIR MUNGE_SOCKET CTLD_PORT N1_PORT N2_PORT
	local d=$1 host
	host=$(hostname)
	cat <<EOF
ClusterName=pystribbed
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$3
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$2
StateSaveLocation=$d/state
SlurmctldPidFile=$d/slurmctld.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdPidFile=$d/slurmd-%n.pid
SlurmdLogFile=$d/slurmd-%n.log
SlurmdSpoolDir=$d/spool-%n
TmpFS=$d/tmp-%n
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
TaskProlog=$d/task-prolog
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$4 CPUs=2 State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$5 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
EOF
}

svc_slurm() {
	local d=$DIR/slurm m=$DIR/slurm/munge n
	mkdir -p "$d/state" "$d/tmp-n1" "$d/tmp-n2" "$m"
	chmod 755 "$m"
	(umask 077; dd if=/dev/urandom bs=1 count=1024 of="$m/munge.key" status=none)
	# As this user (root), not as munge: the bed's directory is private
	# (mode 700), which munged checks and --force lets pass.
	setsid munged -F --force --socket="$m/munge.socket" --key-file="$m/munge.key" \
		--pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed" \
		> "$d/munged.out" 2>&1 < /dev/null &
	echo $! > "$DIR/munge.pid"
	wait_for 30 "$d/munged.out" sh -c "munge -n -S '$m/munge.socket' | unmunge -S '$m/munge.socket'" ||
		return 1
	# Both nodes have the same host name: Open MPI takes ranks of n1 and
	# n2 for neighbours and its shared-memory transport crashes (signal
	# 11), as with two namespace hosts of one name. On real nodes it is
	# right; here the tasks use TCP.
	printf '#!/bin/sh\necho export OMPI_MCA_btl=self,tcp\n' > "$d/task-prolog"
	chmod 755 "$d/task-prolog"
	write_slurm_conf "$d" "$m/munge.socket" "$(free_port)" "$(free_port)" "$(free_port)" > "$d/slurm.conf"
	export SLURM_CONF=$d/slurm.conf
	setsid slurmctld -D -i -f "$d/slurm.conf" > "$d/slurmctld.out" 2>&1 < /dev/null &
	echo $! > "$DIR/slurmctld.pid"
	wait_for 60 "$d/slurmctld.log" scontrol ping || return 1
	for n in n1 n2; do
		setsid slurmd -D -N "$n" -f "$d/slurm.conf" > "$d/slurmd-$n.out" 2>&1 < /dev/null &
		echo $! > "$DIR/slurmd-$n.pid"
	done
	wait_for 60 "$d/slurmd-n2.log" sh -c '[ "$(sinfo -h -N -o %t | grep -c idle)" -eq 2 ]' || return 1
	envline SLURM_CONF "$d/slurm.conf"
	envline BED_SLURM_CONF "$d/slurm.conf"
	envline BED_SLURM_LOG "$d/slurmctld.log"
}

svc_sshd() {
	local d=$DIR/ssh port
	port=$(free_port)
	mkdir -p "$d" /run/sshd
	ssh-keygen -q -t ed25519 -N '' -C "bed host" -f "$d/host_key"
	ssh-keygen -q -t ed25519 -N '' -C "bed user" -f "$d/user_key"
	cp "$d/user_key.pub" "$d/authorized_keys"
	printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$d/host_key.pub")" > "$d/known_hosts"
	{
		echo "Port $port"
		echo "ListenAddress 127.0.0.1"
		echo "HostKey $d/host_key"
		echo "AuthorizedKeysFile $d/authorized_keys"
		echo "PasswordAuthentication no"
		echo "KbdInteractiveAuthentication no"
		echo "PermitRootLogin prohibit-password"
		echo "StrictModes no"
		echo "UsePAM no"
		echo "PidFile $d/sshd.pid"
		echo "Subsystem sftp internal-sftp"
		# Remote sessions use this bed's engines, and Debian's docker client.
		printf 'SetEnv PATH=/usr/bin:/bin:/usr/sbin:/sbin'
		[ -n "${BED_DOCKER_HOST:-}" ] && printf ' DOCKER_HOST=%s' "$BED_DOCKER_HOST"
		[ -n "${BED_CONTAINERS_CONF:-}" ] && printf ' CONTAINERS_CONF=%s CONTAINERS_STORAGE_CONF=%s' \
			"$BED_CONTAINERS_CONF" "$BED_CONTAINERS_STORAGE_CONF"
		[ -n "${BED_SLURM_CONF:-}" ] && printf ' SLURM_CONF=%s' "$BED_SLURM_CONF"
		echo
	} > "$d/sshd_config"
	/usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
	envline BED_SSH_HOST 127.0.0.1
	envline BED_SSH_PORT "$port"
	envline BED_SSH_USER "$(id -un)"
	envline BED_SSH_KEY "$d/user_key"
	envline BED_KNOWN_HOSTS "$d/known_hosts"
	envline BED_SSHD_LOG "$d/sshd.log"
	wait_for 60 "$d/sshd.log" ssh -p "$port" -i "$d/user_key" -o BatchMode=yes \
		-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$d/known_hosts" \
		-o IdentitiesOnly=yes 127.0.0.1 true
}

# Two hosts of their own, h1 and h2 (ENVIRONMENT.md "several hosts with
# their own names and files"): a network namespace each on the bridge
# psbr0 (198.18.0.0/24, reserved for testing; the root namespace is
# 198.18.0.254), and an sshd in its own mount and UTS namespace
# (DIR/hosts/NAME-start.sh): its host name, DIR/hosts/NAME-work bound over
# DIR/pair-work, the workdir, so that the two hosts share no job
# directory, and DIR/hosts/NAME-home over root's home, whose ~/.ssh has
# the host's own ssh client settings (Open MPI's launcher on h1 logs in
# to h2, from the host or from a job's container). Each host's podman has
# its own storage (DIR/hosts/NAME-podman), and the registry, if the bed
# has one, is reached at the same 127.0.0.1:PORT inside each host (socat
# there to the bridge's address, and socat there to the registry). Only
# one such bed at a time (the names and addresses are fixed).
HOSTS_BRIDGE=psbr0
HOSTS_NAMES="h1 h2"

# Host NAME's podman settings; prints its sshd's SetEnv words for them.
hosts_podman() {	# hosts_podman DIR NAME
	local p=$1/$2-podman
	mkdir -p "$p/root" "$p/run" "$p/tmp"
	cat > "$p/containers.conf" <<EOF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$p/tmp"
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
EOF
	cat > "$p/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$p/root"
runroot = "$p/run"
EOF
	printf ' CONTAINERS_CONF=%s CONTAINERS_STORAGE_CONF=%s' "$p/containers.conf" "$p/storage.conf"
}

# The registry at its own 127.0.0.1:PORT inside every host.
hosts_registry() {	# hosts_registry DIR
	local d=$1 port n
	[ -n "${BED_REGISTRY:-}" ] || return 0
	port=${BED_REGISTRY##*:}
	setsid socat "TCP-LISTEN:$port,bind=198.18.0.254,reuseaddr,fork" "TCP:127.0.0.1:$port" \
		< /dev/null > "$d/socat-root.log" 2>&1 &
	echo $! > "$d/socat-root.pid"
	for n in $HOSTS_NAMES; do
		ip netns exec "$n" setsid socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" \
			"TCP:198.18.0.254:$port" < /dev/null > "$d/socat-$n.log" 2>&1 &
	done
	for n in $HOSTS_NAMES; do
		wait_for 30 "$d/socat-$n.log" ip netns exec "$n" curl -sf "http://127.0.0.1:$port/v2/" || return 1
	done
}

svc_hosts() {
	local d=$DIR/hosts n i=0 addr home
	for n in $HOSTS_NAMES; do
		ip netns list | grep -qw "^$n" && die "network namespace '$n' exists already (another bed with hosts?)"
	done
	mkdir -p "$d" "$DIR/pair-work" /run/sshd
	home=$(getent passwd root | cut -d: -f6)
	ssh-keygen -q -t ed25519 -N '' -C "bed hosts user" -f "$d/user_key"
	cp "$d/user_key.pub" "$d/authorized_keys"
	: > "$d/known_hosts"
	ip link add "$HOSTS_BRIDGE" type bridge
	ip addr add 198.18.0.254/24 dev "$HOSTS_BRIDGE"
	ip link set "$HOSTS_BRIDGE" up
	echo "$HOSTS_BRIDGE" > "$d/bridge"
	for n in $HOSTS_NAMES; do
		i=$((i + 1))
		addr=198.18.0.$i
		ip netns add "$n"
		echo "$n" >> "$d/namespaces"
		ip link add "ps-$n" type veth peer name "ps-$n-in"
		ip link set "ps-$n-in" netns "$n"
		ip link set "ps-$n" master "$HOSTS_BRIDGE" up
		ip netns exec "$n" ip link set lo up
		ip netns exec "$n" ip addr add "$addr/24" dev "ps-$n-in"
		ip netns exec "$n" ip link set "ps-$n-in" up
		ssh-keygen -q -t ed25519 -N '' -C "bed host $n" -f "$d/$n-host_key"
		printf '%s %s\n' "$addr" "$(cut -d' ' -f1,2 "$d/$n-host_key.pub")" >> "$d/known_hosts"
		mkdir -p "$d/$n-work" "$d/$n-home/.ssh"
		# Each host's name resolves to its address, as on real hosts
		# (torch's gloo in a session binds to it): bound over /etc/hosts.
		printf '127.0.0.1 localhost\n198.18.0.1 h1\n198.18.0.2 h2\n' > "$d/$n-hosts"
		chmod 700 "$d/$n-home/.ssh"
		cp "$d/user_key" "$d/$n-home/.ssh/id_ed25519"
		cat > "$d/$n-home/.ssh/config" <<EOF
Host *
	User root
	IdentityFile ~/.ssh/id_ed25519
	IdentitiesOnly yes
	StrictHostKeyChecking yes
	BatchMode yes
EOF
		cat > "$d/$n-sshd_config" <<EOF
Port 22
ListenAddress $addr
HostKey $d/$n-host_key
AuthorizedKeysFile $d/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $d/$n-sshd.pid
Subsystem sftp internal-sftp
SetEnv PATH=/usr/bin:/bin:/usr/sbin:/sbin$(hosts_podman "$d" "$n")
EOF
		# nsenter, not ip netns exec: that mounts a /sys of the namespace,
		# without the cgroup hierarchy podman's runc needs.
		cat > "$d/$n-start.sh" <<EOF
# The sshd of host $n (integration/bed.sh svc_hosts): sh $d/$n-start.sh
exec nsenter --net=/run/netns/$n unshare -m -u --propagation private sh -c "hostname $n && mount --bind '$d/$n-work' '$DIR/pair-work' && mount --bind '$d/$n-home' '$home' && mount --bind '$d/$n-hosts' /etc/hosts && exec /usr/sbin/sshd -f '$d/$n-sshd_config' -E '$d/$n-sshd.log'"
EOF
	done
	# Every host's known_hosts has them all.
	for n in $HOSTS_NAMES; do
		cp "$d/known_hosts" "$d/$n-home/.ssh/known_hosts"
		sh "$d/$n-start.sh"
	done
	for n in $HOSTS_NAMES; do
		addr=198.18.0.${n#h}
		wait_for 30 "$d/$n-sshd.log" ssh -i "$d/user_key" -o BatchMode=yes -o StrictHostKeyChecking=yes \
			-o UserKnownHostsFile="$d/known_hosts" -o IdentitiesOnly=yes "root@$addr" true || return 1
	done
	# h1's own client reaches h2, as Open MPI's launcher will.
	wait_for 30 "$d/h1-sshd.log" ssh -i "$d/user_key" -o BatchMode=yes -o StrictHostKeyChecking=yes \
		-o UserKnownHostsFile="$d/known_hosts" -o IdentitiesOnly=yes root@198.18.0.1 \
		ssh 198.18.0.2 true || return 1
	hosts_registry "$d" || return 1
	envline BED_HOSTS "root@198.18.0.1:22*2, root@198.18.0.2:22*2"
	envline BED_HOSTS_KEY "$d/user_key"
	envline BED_HOSTS_KNOWN_HOSTS "$d/known_hosts"
	envline BED_HOSTS_WORKDIR "$DIR/pair-work"
}

# Removes the hosts: their sshds (and what runs in their namespaces: the
# jobs' containers too), the namespaces, the bridge, the registry's
# forward, and /etc/netns entries of older beds. Idempotent.
stop_hosts() {
	local d=$DIR/hosts n pid
	[ -d "$d" ] || return 0
	for n in $(cat "$d/namespaces" 2>/dev/null); do
		for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
		ip netns del "$n" 2>/dev/null || true
		rm -rf "/etc/netns/$n"
		rm -f "$d/$n-sshd.pid"
	done
	rm -f "$d/namespaces"
	kill_pidfile "$d/socat-root.pid"
	if [ -f "$d/bridge" ]; then
		ip link del "$(cat "$d/bridge")" 2>/dev/null || true
		rm -f "$d/bridge"
	fi
}

# The base image: Debian bookworm with python3, Open MPI, mpi4py and numpy
# (sessions push and pull numpy arrays: t0702), made by
# mmdebstrap from this machine's own apt sources (no internet), laid out as
# an OCI image by hand, cached by a hash of what goes into it.
build_base_cache() {
	local key out tmp
	key=$(printf '%s\n' "$BASE_PACKAGES" "$(sed -n '/^build_base_cache/,/^}/p' "$0")" | sha256sum | cut -c1-16)
	out=$CACHE/base-$key
	if [ -f "$out/index.json" ]; then echo "$out"; return; fi
	mkdir -p "$CACHE"
	tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
	echo "bed: building the base image with mmdebstrap (once; cached in $out)" >&2
	mmdebstrap --quiet --variant=apt --include="$BASE_PACKAGES" bookworm "$tmp/rootfs.tar" >&2
	local diff_id layer config manifest
	diff_id=$(sha256sum < "$tmp/rootfs.tar" | cut -d' ' -f1)
	gzip -n -1 < "$tmp/rootfs.tar" > "$tmp/layer.tar.gz"
	rm -f "$tmp/rootfs.tar"
	mkdir -p "$tmp/oci/blobs/sha256"
	layer=$(sha256sum < "$tmp/layer.tar.gz" | cut -d' ' -f1)
	mv "$tmp/layer.tar.gz" "$tmp/oci/blobs/sha256/$layer"
	printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"Cmd":["python3"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"mmdebstrap --variant=apt --include=%s bookworm"}]}' \
		"$diff_id" "$BASE_PACKAGES" > "$tmp/config.json"
	config=$(sha256sum < "$tmp/config.json" | cut -d' ' -f1)
	mv "$tmp/config.json" "$tmp/oci/blobs/sha256/$config"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
		"$config" "$(stat -c %s "$tmp/oci/blobs/sha256/$config")" "$layer" "$(stat -c %s "$tmp/oci/blobs/sha256/$layer")" > "$tmp/manifest.json"
	manifest=$(sha256sum < "$tmp/manifest.json" | cut -d' ' -f1)
	mv "$tmp/manifest.json" "$tmp/oci/blobs/sha256/$manifest"
	printf '{"imageLayoutVersion":"1.0.0"}' > "$tmp/oci/oci-layout"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bookworm"}}]}' \
		"$manifest" "$(stat -c %s "$tmp/oci/blobs/sha256/$manifest")" > "$tmp/oci/index.json"
	rm -rf "$out"
	mv "$tmp/oci" "$out"
	rm -rf "$tmp"
	echo "$out"
}

svc_base() {
	[ -n "${BED_REGISTRY:-}" ] || die "base needs the registry service"
	local layout
	layout=$(build_base_cache)
	skopeo copy --quiet --dest-tls-verify=false "oci:$layout:bookworm" \
		"docker://$BED_REGISTRY/pystrib/base:bookworm" >&2
	envline BED_BASE "$BED_REGISTRY/pystrib/base:bookworm"
}

write_config() {
	local f=$DIR/pystrib.ini
	{
		echo "; written by integration/bed.sh for the bed in $DIR"
		echo "[registry]"
		[ -n "${BED_REGISTRY:-}" ] && echo "url = http://$BED_REGISTRY"
		echo "repository = cells"
		echo "[image]"
		[ -n "${BED_BASE:-}" ] && echo "base = $BED_BASE"
		echo "[remote]"
		if [ -n "${BED_SSH_PORT:-}" ]; then
			echo "host = $BED_SSH_HOST"
			echo "port = $BED_SSH_PORT"
			echo "user = $BED_SSH_USER"
			echo "identity = $BED_SSH_KEY"
			echo "known_hosts = $BED_KNOWN_HOSTS"
		fi
		echo "workdir = $DIR/remote"
		echo "runtime = docker"
		[ -n "${BED_DOCKER_HOST:-}" ] && echo "docker_socket = ${BED_DOCKER_HOST#unix://}"
		echo "[remote.podman]"
		echo "runtime = podman"
		echo "[remote.none]"
		echo "runtime = none"
		echo "python = /usr/bin/python3"
		echo "mpirun_args = --oversubscribe"
		if [ -n "${BED_HOSTS:-}" ]; then
			echo "[remote.pair]"
			echo "runtime = none"
			echo "python = /usr/bin/python3"
			echo "hosts = $BED_HOSTS"
			echo "identity = $BED_HOSTS_KEY"
			echo "known_hosts = $BED_HOSTS_KNOWN_HOSTS"
			echo "workdir = $BED_HOSTS_WORKDIR"
			echo "[remote.pairpod]"
			echo "runtime = podman"
			echo "hosts = $BED_HOSTS"
			echo "identity = $BED_HOSTS_KEY"
			echo "known_hosts = $BED_HOSTS_KNOWN_HOSTS"
			echo "workdir = $BED_HOSTS_WORKDIR"
		fi
	} > "$f"
	chmod 600 "$f"
	envline BED_CONFIG "$f"
}

cmd_start() {
	[ $# -ge 1 ] || die "usage: bed.sh start DIR [registry tls sshd docker podman base slurm hosts]"
	DIR=$(realpath -m "$1")
	shift
	local services=("$@")
	[ ${#services[@]} -gt 0 ] || services=(registry tls docker podman sshd base)
	mkdir -p "$DIR"
	: > "$DIR/env"
	envline BED_DIR "$DIR"
	# Order matters: sshd passes the engines' addresses to its sessions.
	local s
	for s in registry tls docker podman base slurm sshd hosts; do
		if printf '%s\n' "${services[@]}" | grep -qx "$s"; then
			if ! "svc_$s"; then
				cmd_stop "$DIR"
				die "cannot start $s (logs in $DIR)"
			fi
		fi
	done
	for s in "${services[@]}"; do
		case $s in registry|tls|docker|podman|base|slurm|sshd|hosts) ;; *) cmd_stop "$DIR"; die "unknown service '$s'";; esac
	done
	write_config
}

kill_pidfile() {
	local f=$1 pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

cmd_stop() {
	[ $# -ge 1 ] || die "usage: bed.sh stop DIR"
	DIR=$(realpath -m "$1")
	[ -d "$DIR" ] || return 0
	if [ -S "$DIR/docker/docker.sock" ]; then
		local ids
		ids=$(/usr/bin/docker -H "unix://$DIR/docker/docker.sock" ps -aq 2>/dev/null || true)
		[ -z "$ids" ] || /usr/bin/docker -H "unix://$DIR/docker/docker.sock" rm -f $ids >/dev/null 2>&1 || true
	fi
	if [ -f "$DIR/podman/containers.conf" ]; then
		CONTAINERS_CONF="$DIR/podman/containers.conf" CONTAINERS_STORAGE_CONF="$DIR/podman/storage.conf" \
			podman rm -af -t 0 >/dev/null 2>&1 || true
	fi
	kill_pidfile "$DIR/ssh/sshd.pid"
	kill_pidfile "$DIR/registry.pid"
	kill_pidfile "$DIR/tls.pid"
	kill_pidfile "$DIR/docker.pid"
	# Slurm: its jobs, the nodes (their steps go with them), the
	# controller, munge last.
	if [ -f "$DIR/slurm/slurm.conf" ]; then
		SLURM_CONF=$DIR/slurm/slurm.conf timeout 10 scancel --quiet --user=root 2>/dev/null || true
	fi
	kill_pidfile "$DIR/slurmd-n1.pid"
	kill_pidfile "$DIR/slurmd-n2.pid"
	kill_pidfile "$DIR/slurmctld.pid"
	kill_pidfile "$DIR/munge.pid"
	stop_hosts
	# Jobs of runtime none outlive the login that started them (a session's
	# hub, a detached job): whatever still runs in the bed's job directories.
	pkill -KILL -f -- "$DIR/remote/jobs/" 2>/dev/null || true
	# Whatever the daemons left mounted (overlay layers, container shm).
	{ grep -F " $DIR/" /proc/mounts || true; } | cut -d' ' -f2 | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
*) die "usage: bed.sh start DIR [SERVICES...] | bed.sh stop DIR" ;;
esac
