#!/usr/bin/env bash
# Installs the Debian packages whose servers Herald's tests and local stack run privately
# (pkg/testenv): redis-server, zookeeper and mariadb-server. Extra package names may be given as
# arguments. Packages already present are left alone, and apt is not called at all when nothing is
# missing, so this is cheap to run before every test run.
#
#   scripts/install-deps.sh [extra-package...]
set -euo pipefail

missing=()

have_program() {
	# mariadbd lives in /usr/sbin, which is often not on an ordinary user's PATH.
	command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]
}

have_program redis-server || missing+=(redis-server)
[[ -f /usr/share/java/zookeeper.jar ]] || missing+=(zookeeper)
# zookeeper pulls in a JRE; this catches a JRE removed since.
have_program java || missing+=(default-jre-headless)
have_program mariadbd || missing+=(mariadb-server)

for pkg in "$@"; do
	dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
	echo "install-deps: all present (redis-server zookeeper mariadb-server${*:+ $*}), nothing to do"
	exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	sudo=(sudo)
fi
# Through env, because sudo does not pass the caller's environment on.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${missing[*]}"
