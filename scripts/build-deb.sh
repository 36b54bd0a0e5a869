#!/usr/bin/env bash
# Builds the Debian package of peermesh from a built binary, with Debian's own dpkg-deb.
#
#   scripts/build-deb.sh --binary PATH [--out DIR] [--fast]
#
# --fast compresses with gzip -1 instead of xz (for tests that package a large debug build).
# `make deb` runs it on the release build. The package holds the binary (/usr/bin/peermesh),
# the systemd unit (/lib/systemd/system/peermesh.service, from docs/peermesh.service with
# ExecStart at /usr/bin), an example /etc/peermesh/peers.ron (a conffile: an upgrade never
# overwrites yours), the man pages and shell completions the binary generates, and the docs.
# postinst creates the `peermesh` system user the unit runs as; nothing is started.
# Prints the path of the .deb it wrote (default DIR: the binary's directory + /debian).
set -euo pipefail
cd "$(dirname "$0")/.."
binary= out= compress=(-Zxz)
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --fast) compress=(-Zgzip -z1); shift ;;
        *) echo "usage: scripts/build-deb.sh --binary PATH [--out DIR] [--fast]" >&2; exit 2 ;;
    esac
done
[ -x "$binary" ] || { echo "build-deb.sh: --binary $binary is not an executable" >&2; exit 2; }
command -v dpkg-deb >/dev/null || { echo "build-deb.sh: needs dpkg-deb (Debian's dpkg)" >&2; exit 1; }
out=${out:-$(dirname "$binary")/debian}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/peermesh

install -D -m 0755 "$binary" "$root/usr/bin/peermesh"
install -d "$root/lib/systemd/system"
sed 's|/usr/local/bin/peermesh|/usr/bin/peermesh|g' docs/peermesh.service \
    > "$root/lib/systemd/system/peermesh.service"
chmod 0644 "$root/lib/systemd/system/peermesh.service"
install -D -m 0644 packaging/peers.ron "$root/etc/peermesh/peers.ron"

# Man pages: peermesh(1) and one per command (peermesh-run(1), ...).
man=$root/usr/share/man/man1
install -d "$man"
"$binary" man | gzip -9n > "$man/peermesh.1.gz"
for cmd in $("$binary" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z]*\) .*/\1/p'); do
    [ "$cmd" = help ] && continue
    "$binary" man "$cmd" | gzip -9n > "$man/peermesh-$cmd.1.gz"
done
install -d "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$binary" completions bash > "$root/usr/share/bash-completion/completions/peermesh"
"$binary" completions zsh > "$root/usr/share/zsh/vendor-completions/_peermesh"
"$binary" completions fish > "$root/usr/share/fish/vendor_completions.d/peermesh.fish"

doc=$root/usr/share/doc/peermesh
install -d "$doc"
install -m 0644 packaging/copyright "$doc/copyright"
install -m 0644 README.md docs/OPERATIONS.md docs/CONTROL.md docs/PROTOCOL.md docs/SECURITY.md "$doc/"

install -d "$root/DEBIAN"
install -m 0755 packaging/postinst packaging/postrm "$root/DEBIAN/"
echo /etc/peermesh/peers.ron > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<END
Package: peermesh
Version: $version
Architecture: $arch
Maintainer: peermesh developers <peermesh@localhost>
Section: net
Priority: optional
Depends: libc6, adduser
Installed-Size: $size
Description: peer-mesh daemon: heartbeats, liveness and latencies between every pair of nodes
 Each VM runs one small peermesh node. Every node reads the same peers.ron, heartbeats
 its peers over UDP, and keeps their liveness and the round-trip latencies between every
 pair of nodes; nodes also pass tags, messages and queries to each other. One thread, a
 local control socket, Prometheus metrics and a status page.
END
mkdir -p "$out"
deb=$out/peermesh_${version}_${arch}.deb
dpkg-deb --build --root-owner-group "${compress[@]}" "$root" "$deb" >/dev/null
echo "$deb"
