#!/bin/bash
# make install and make deb: the installed paths and modes, the units, the package's fields,
# Depends from dpkg-shlibdeps and apt's resolution of them, the maintainer scripts' systemctl
# calls, and an install, upgrade, remove and purge into a throwaway root (dpkg --root) that keeps
# every file of /etc/vmcrypt and /var/lib/vmcrypt.
. "$(dirname "$0")/../lib.sh"
require_root
require_cmd make dpkg dpkg-deb dpkg-shlibdeps readelf systemctl systemd-analyze unshare sha256sum
[ -x "$VMCRYPT" ] || skip_all "no $VMCRYPT (build first)"

# Build the targets against the build under test, with the switches it was made with, so that
# make only relinks what a version change touches (tests/run passes an absolute path).
build=${BUILD#"$TOP"/}
san=0
readelf -s "$VMCRYPT" | grep -q '__asan_init' && san=1
cc=gcc
readelf -p .comment "$VMCRYPT" 2>/dev/null | grep -q clang && cc=clang
mk() { make -C "$TOP" --no-print-directory -s BUILD="$build" SANITIZE=$san CC=$cc "$@"; }
mode() { stat -c %a "$1"; }
multiarch=$(gcc -print-multiarch)
tokendir=usr/lib/$multiarch/cryptsetup
plugin=$BUILD/libcryptsetup-token-vmcrypt.so

# --- make install DESTDIR= ---------------------------------------------------------------------
D=$WORK/destdir
mk install DESTDIR="$D" >"$WORK/install.out" 2>&1
rc=$?
check_eq "make install DESTDIR= exits 0" 0 "$rc"
[ "$rc" = 0 ] || cat "$WORK/install.out"
for f in usr/sbin/vmcrypt usr/sbin/vmcryptd usr/bin/vmcrypt-admin; do
	check_eq "$f is 0755" 755 "$(mode "$D/$f" 2>&1)"
done
check "installed vmcrypt is the build's" cmp -s "$VMCRYPT" "$D/usr/sbin/vmcrypt"
for f in lib/systemd/system/vmcrypt-agent.service lib/systemd/system/vmcryptd.service \
	etc/vmcrypt/agent.conf.example usr/share/doc/vmcrypt/README.md usr/share/doc/vmcrypt/install.md \
	usr/share/doc/vmcrypt/agent.md; do
	check_eq "$f is 0644" 644 "$(mode "$D/$f" 2>&1)"
done
check_eq "/etc/vmcrypt is 0755" 755 "$(mode "$D/etc/vmcrypt")"
check "nothing installed under var/ (state is not package data)" test ! -e "$D/var"
check "nothing installed but the example under etc/vmcrypt" \
	test "$(ls "$D/etc/vmcrypt")" = agent.conf.example
if [ -f "$plugin" ] || compgen -G "$TOP/src/token-plugin/*.c" >/dev/null; then
	check_eq "token plugin in libcryptsetup's token directory, 0644" 644 \
		"$(mode "$D/$tokendir/libcryptsetup-token-vmcrypt.so" 2>&1)"
else
	skip "token plugin: not built yet (no src/token-plugin)"
	check_contains "install says the plugin is missing" "libcryptsetup-token-vmcrypt.so is not built" \
		"$(cat "$WORK/install.out")"
fi
# The token directory is where this libcryptsetup looks, whichever spelling of /lib it uses.
compiled=$(strings "$(ldconfig -p | awk '/libcryptsetup.so.12 /{print $NF; exit}')" | grep -m1 '^/.*lib.*/cryptsetup$')
check_eq "tokendir is libcryptsetup's token directory" "$(realpath -m "$compiled")" "$(realpath -m "/$tokendir")"

unit=$D/lib/systemd/system/vmcrypt-agent.service
check_contains "agent unit runs vmcrypt agent" "ExecStart=/usr/sbin/vmcrypt agent" "$(cat "$unit")"
for line in ConditionPathExists=/etc/vmcrypt/credential Restart=on-failure RestartSec=5 \
	After=network-online.target Wants=network-online.target KillMode=mixed WantedBy=multi-user.target; do
	check "agent unit: $line" grep -q "^${line}" "$unit"
done
check "agent unit: no mount namespace or device sandboxing" \
	bash -c "! grep -Eq '^(ProtectSystem|ProtectHome|PrivateTmp|PrivateDevices|PrivateMounts|DevicePolicy|ReadOnlyPaths|MountFlags)=' '$unit'"
dunit=$D/lib/systemd/system/vmcryptd.service
check_contains "vmcryptd unit: data dir" "ExecStart=/usr/sbin/vmcryptd --data-dir /var/lib/vmcryptd" "$(cat "$dunit")"
for line in StateDirectory=vmcryptd StateDirectoryMode=0700 NoNewPrivileges=yes ProtectSystem=strict; do
	check "vmcryptd unit: $line" grep -q "^${line}$" "$dunit"
done
check "no @placeholder@ left in the units" bash -c "! grep -q '@[a-z]*@' '$unit' '$dunit'"

# With another PREFIX the units name the programs where they are, and systemd accepts every line
# (systemd-analyze verify needs the ExecStart programs to exist, so this install is unstaged).
P=$WORK/prefix
mk install PREFIX="$P/usr" sysconfdir="$P/etc" unitdir="$P/units" tokendir="$P/tok" >/dev/null 2>&1
check "PREFIX=: agent unit runs $P/usr/sbin/vmcrypt" grep -q "^ExecStart=$P/usr/sbin/vmcrypt agent$" "$P/units/vmcrypt-agent.service"
check "PREFIX=: agent unit's condition under sysconfdir" grep -q "^ConditionPathExists=$P/etc/vmcrypt/credential$" "$P/units/vmcrypt-agent.service"
for u in vmcrypt-agent.service vmcryptd.service; do
	out=$(systemd-analyze verify "$P/units/$u" 2>&1)
	check_eq "systemd-analyze verify $u: no complaint" "" "$out"
done

# --as-needed: each program records only the libraries it uses.
needed() { readelf -d "$1" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'; }
check "vmcrypt-admin needs no libcryptsetup or libmicrohttpd" \
	bash -c "! readelf -d '$VMCRYPT_ADMIN' | grep -Eq 'libcryptsetup|libmicrohttpd|libsqlite3|libmount'"
check "vmcryptd needs no libcryptsetup, libblkid or libcurl" \
	bash -c "! readelf -d '$VMCRYPTD' | grep -Eq 'libcryptsetup|libblkid|libmount|libcurl'"
check "vmcrypt needs no libmicrohttpd or libsqlite3" \
	bash -c "! readelf -d '$VMCRYPT' | grep -Eq 'libmicrohttpd|libsqlite3'"
check_contains "vmcrypt needs libcryptsetup" libcryptsetup.so.12 "$(needed "$VMCRYPT")"

# --- make deb ----------------------------------------------------------------------------------
mk deb >"$WORK/deb.out" 2>&1
rc=$?
check_eq "make deb exits 0" 0 "$rc"
[ "$rc" = 0 ] || cat "$WORK/deb.out"
debs=("$BUILD"/vmcrypt_*_amd64.deb)
check_eq "one vmcrypt_<version>_amd64.deb in the build" 1 "$(ls "$BUILD"/vmcrypt_*_amd64.deb 2>/dev/null | wc -l)"
deb=${debs[0]}
f() { dpkg-deb -f "$deb" "$1"; }
check_eq "Package" vmcrypt "$(f Package)"
check_eq "Architecture" "$(dpkg --print-architecture)" "$(f Architecture)"
check_eq "Architecture is amd64" amd64 "$(f Architecture)"
ver=$(f Version)
check "Version is 0.9.0+git<commits>.<hash>[.dirty]" \
	grep -Eq '^0\.9\.0(\+git[0-9]+\.[0-9a-f]{7}(\.dirty)?)?$' <<<"$ver"
check "Version is valid for dpkg" dpkg --compare-versions "$ver" gt 0.9.0~
check_eq "file name carries the Version" "vmcrypt_${ver}_amd64.deb" "$(basename "$deb")"
check_eq "the programs say the same version" "vmcrypt $ver" "$("$BUILD/vmcrypt" --version)"
dep=$(f Depends)
for lib in libc6 libcryptsetup12 libcurl4 libjansson4 libmicrohttpd12; do
	check "Depends has $lib (with the version shlibdeps found)" grep -Eq "(^|, )$lib \(>= [^)]+\)" <<<"$dep"
done
check_eq "Depends is not written in the control template" "Depends: @DEPENDS@" \
	"$(grep '^Depends:' "$TOP/dist/debian/control.in")"
check "Installed-Size is set" grep -Eq '^[0-9]+$' <<<"$(f Installed-Size)"

contents=$(dpkg-deb -c "$deb")
for p in ./usr/sbin/vmcrypt ./usr/sbin/vmcryptd ./usr/bin/vmcrypt-admin; do
	check "contents: $p rwxr-xr-x root/root" grep -Eq "^-rwxr-xr-x root/root .* $p$" <<<"$contents"
done
for p in ./lib/systemd/system/vmcrypt-agent.service ./lib/systemd/system/vmcryptd.service \
	./etc/vmcrypt/agent.conf.example ./usr/share/doc/vmcrypt/install.md; do
	check "contents: $p rw-r--r-- root/root" grep -Eq "^-rw-r--r-- root/root .* $p$" <<<"$contents"
done
if [ -f "$plugin" ]; then
	check "contents: the token plugin" grep -q " ./$tokendir/libcryptsetup-token-vmcrypt.so$" <<<"$contents"
else
	skip "contents: token plugin not built yet"
fi
# The OS volume's initramfs-tools hook and boot script, dracut's module (docs/os-volume.md), and
# the trigger that rebuilds the initramfs with them (Debian's dracut is interested in it too).
for p in ./usr/share/initramfs-tools/hooks/vmcrypt ./usr/share/initramfs-tools/scripts/local-top/vmcrypt \
	./usr/lib/dracut/modules.d/90vmcrypt/module-setup.sh ./usr/lib/dracut/modules.d/90vmcrypt/vmcrypt-unlock.sh; do
	check "contents: $p rwxr-xr-x root/root" grep -Eq "^-rwxr-xr-x root/root .* $p$" <<<"$contents"
done
check "contents: dracut's unit rw-r--r--" \
	grep -Eq "^-rw-r--r-- root/root .* ./usr/lib/dracut/modules.d/90vmcrypt/vmcrypt-unlock.service$" <<<"$contents"
check_eq "triggers: update-initramfs" "activate-noawait update-initramfs" "$(dpkg-deb -I "$deb" triggers 2>&1)"
check "contents: no /var, no credential, no agent.conf" \
	bash -c "! grep -Eq ' \./var/| \./etc/vmcrypt/(credential|agent\.conf)$' <<<'$contents'"
X=$WORK/x
dpkg-deb -x "$deb" "$X"
check "dracut's module names the installed vmcrypt" \
	grep -q 'require_binaries /usr/sbin/vmcrypt ' "$X/usr/lib/dracut/modules.d/90vmcrypt/module-setup.sh"
check "packaged programs are stripped" bash -c "! readelf -S '$X/usr/sbin/vmcrypt' | grep -q '\.debug_info'"

C=$WORK/control
dpkg-deb -e "$deb" "$C"
check_eq "conffiles: the example config" /etc/vmcrypt/agent.conf.example "$(cat "$C/conffiles")"
for s in postinst prerm postrm; do
	check "$s is executable" test -x "$C/$s"
	check "$s parses (sh -n)" sh -n "$C/$s"
	check "$s runs with set -e" grep -q '^set -e$' "$C/$s"
done
check "md5sums match the files" bash -c "cd '$X' && md5sum --quiet -c '$C/md5sums'"

# Every Depends resolves from the configured Debian 12 archive on a system with nothing installed.
if compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
	: >"$WORK/empty-status"
	out=$(apt-get -s -o Dir::State::status="$WORK/empty-status" -o APT::Install-Recommends=0 \
		install "$deb" 2>&1)
	check "apt-get install ./vmcrypt.deb resolves on an empty system" grep -q "^Inst vmcrypt ($ver" <<<"$out"
	check "apt pulls libcryptsetup12 for it" grep -q '^Inst libcryptsetup12 ' <<<"$out"
else
	skip "apt resolution: no package lists (apt-get update)"
fi

# --- maintainer scripts on a running systemd -----------------------------------------------------
# In a private mount namespace with its own /run (with or without /run/systemd/system, systemd's
# sign that it runs the system) and systemctl a recorder.
mkdir -p "$WORK/stub"
printf '#!/bin/sh\necho "$*" >>"%s"\n' "$WORK/systemctl.log" >"$WORK/stub/systemctl"
chmod 755 "$WORK/stub/systemctl"
calls() { # running|offline SCRIPT ARGS...: the systemctl calls the script makes
	local sd=$1; shift
	: >"$WORK/systemctl.log"
	unshare -m sh -c 'mount -t tmpfs tmpfs /run && { [ "$1" = offline ] || mkdir -p /run/systemd/system; } &&
		shift && exec env -u DPKG_ROOT PATH="$0:$PATH" "$@"' "$WORK/stub" "$sd" "$@" >/dev/null 2>&1 ||
		echo "exit $?" >>"$WORK/systemctl.log"
	tr '\n' ';' <"$WORK/systemctl.log"
}
check_eq "postinst first install: reload, enable (not start)" \
	"daemon-reload;enable remote-cryptsetup.target vmcrypt-agent.service;" "$(calls running "$C/postinst" configure "")"
check_eq "postinst upgrade: reload, restart what runs, enable nothing" \
	"daemon-reload;try-restart vmcrypt-agent.service vmcryptd.service;" "$(calls running "$C/postinst" configure 0.9.0)"
check_eq "prerm remove stops the agent" "stop vmcrypt-agent.service vmcryptd.service;" "$(calls running "$C/prerm" remove)"
check_eq "prerm upgrade stops nothing" "" "$(calls running "$C/prerm" upgrade 0.9.1)"
check_eq "postrm remove: reload" "daemon-reload;" "$(calls running "$C/postrm" remove)"
# Without a running systemd (an image build, a container) only enable is tried: it works offline.
check_eq "postinst without running systemd: enable only" \
	"enable remote-cryptsetup.target vmcrypt-agent.service;" "$(calls offline "$C/postinst" configure "")"
check_eq "prerm remove without running systemd: nothing" "" "$(calls offline "$C/prerm" remove)"
# An encrypted OS volume opens at boot with this package's hook: removing it is refused.
mkdir -p "$WORK/osroot/boot/vmcrypt" && : >"$WORK/osroot/boot/vmcrypt/os.conf"
out=$(DPKG_ROOT=$WORK/osroot sh "$C/prerm" remove 2>&1) && rc=0 || rc=$?
check_eq "prerm remove with an encrypted OS volume: refused" 1 "$rc"
check "the refusal says why and what to do" grep -q "decrypt it first (DisableEncryption for VolumeType OS)" <<<"$out"
check_eq "prerm upgrade with an encrypted OS volume: goes on" "" "$(DPKG_ROOT=$WORK/osroot sh "$C/prerm" upgrade 0.9.1 2>&1)"

# --- install, upgrade, remove, purge into a throwaway root ---------------------------------------
# dpkg --root with chrootless scripts (DPKG_ROOT=R, so systemctl --root=R enables, for real).
R=$WORK/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/lib/systemd/system"
: >"$R/var/lib/dpkg/status"
: >"$R/var/lib/dpkg/available"
cp /lib/systemd/system/remote-cryptsetup.target "$R/lib/systemd/system/"
rdpkg() { dpkg --root="$R" --force-script-chrootless --force-depends "$@" >>"$WORK/dpkg.log" 2>&1; }
status() { dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${db:Status-Abbrev}${Version}' vmcrypt 2>/dev/null | tr -s ' '; }
wants=$R/etc/systemd/system/multi-user.target.wants

check "dpkg --root -i" rdpkg -i "$deb"
check_eq "installed and configured" "ii $ver" "$(status)"
check "installed /usr/sbin/vmcrypt runs" "$R/usr/sbin/vmcrypt" --version
check "agent enabled" test -L "$wants/vmcrypt-agent.service"
check "remote-cryptsetup.target enabled" test -L "$wants/remote-cryptsetup.target"
check "vmcryptd not enabled" test ! -e "$wants/vmcryptd.service"

# What enrollment and the agent write, what an administrator edits, what vmcryptd keeps.
echo "Server=https://10.0.2.100:8443" >"$R/etc/vmcrypt/agent.conf"
(umask 077; echo vmc-vm-1-00ff >"$R/etc/vmcrypt/credential")
echo "-----BEGIN CERTIFICATE-----" >"$R/etc/vmcrypt/ca.pem"
mkdir -p "$R/var/lib/vmcrypt/headers" "$R/var/lib/vmcryptd"
echo '{"sequence": 3}' >"$R/var/lib/vmcrypt/agent.json"
echo '{}' >"$R/var/lib/vmcrypt/journal.json"
head -c 65536 /dev/urandom >"$R/var/lib/vmcrypt/headers/srv.luks"
head -c 32 /dev/urandom >"$R/var/lib/vmcryptd/master.key"
echo "StopUnits=auto" >>"$R/etc/vmcrypt/agent.conf.example"
kept() { tree_sums "$R/etc/vmcrypt" | grep -v agent.conf.example; tree_sums "$R/var/lib/vmcrypt"; tree_sums "$R/var/lib/vmcryptd"; }
before=$(kept)
edited=$(sha256sum <"$R/etc/vmcrypt/agent.conf.example")
check_eq "the kept files are six plus the master key" 7 "$(wc -l <<<"$before")"

# Upgrade to a later version of the same tree; the administrator had disabled the agent.
systemctl --root="$R" disable vmcrypt-agent.service >/dev/null 2>&1
cp -a "$BUILD/deb-root" "$WORK/stage2"
"$TOP/scripts/mkdeb" --root "$WORK/stage2" --version "$ver.1" --out "$WORK/vmcrypt_${ver}.1_amd64.deb" >/dev/null
check "dpkg --root -i (upgrade)" rdpkg -i "$WORK/vmcrypt_${ver}.1_amd64.deb"
check_eq "upgraded" "ii $ver.1" "$(status)"
check_eq "upgrade keeps /etc/vmcrypt and /var/lib/vmcrypt byte for byte" "$before" "$(kept)"
check_eq "upgrade keeps the edited conffile" "$edited" "$(sha256sum <"$R/etc/vmcrypt/agent.conf.example")"
check_eq "credential still 0600" 600 "$(mode "$R/etc/vmcrypt/credential")"
check "upgrade leaves the disabled agent disabled" test ! -e "$wants/vmcrypt-agent.service"
systemctl --root="$R" enable vmcrypt-agent.service >/dev/null 2>&1

check "dpkg --root -r" rdpkg -r vmcrypt
check_eq "removed, config files left" "rc $ver.1" "$(status)"
check "remove takes the programs" test ! -e "$R/usr/sbin/vmcrypt"
check "remove takes the units" test ! -e "$R/lib/systemd/system/vmcrypt-agent.service"
check_eq "remove keeps /etc/vmcrypt and /var/lib/vmcrypt byte for byte" "$before" "$(kept)"
check "remove keeps the conffile" test -f "$R/etc/vmcrypt/agent.conf.example"

check "dpkg --root -P" rdpkg -P vmcrypt
check_eq "purged" "" "$(status)"
check_eq "purge keeps /etc/vmcrypt and /var/lib/vmcrypt byte for byte" "$before" "$(kept)"
check "purge removes the conffile" test ! -e "$R/etc/vmcrypt/agent.conf.example"
check "purge removes the agent's enablement" test ! -L "$wants/vmcrypt-agent.service"
check "purge keeps remote-cryptsetup.target enabled" test -L "$wants/remote-cryptsetup.target"

check "reinstall after purge" rdpkg -i "$deb"
check "reinstall enables the agent again" test -L "$wants/vmcrypt-agent.service"
check_eq "reinstall keeps /etc/vmcrypt and /var/lib/vmcrypt byte for byte" "$before" "$(kept)"
[ "$_failed" = 0 ] || cat "$WORK/dpkg.log"

finish
