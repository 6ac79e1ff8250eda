#!/usr/bin/env bash
# Make busybox:latest in the local Docker Engine without a registry (there is none here):
# unpack Debian's busybox-static, give it a root with one symlink per applet, and import it.
# Idempotent: exits at once when the image already exists. Works from any directory.
set -euo pipefail

image="${FLOTILLA_BUSYBOX_IMAGE:-busybox:latest}"

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image already exists"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-busybox.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

# The package index may be empty on a fresh machine: update only if the download fails.
if ! apt-get download busybox-static >/dev/null 2>&1; then
    echo "apt-get download busybox-static failed; running apt-get update first" >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get update >/dev/null; else sudo apt-get update >/dev/null; fi
    apt-get download busybox-static >/dev/null
fi

deb="$(ls busybox-static_*.deb | head -n 1)"
dpkg-deb -x "$deb" unpacked

root="$work/root"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
busybox_bin="unpacked/bin/busybox"
[ -x "$busybox_bin" ] || busybox_bin="$(find unpacked -type f -name busybox | head -n 1)"
cp "$busybox_bin" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"

for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$root/bin/$applet"
done

echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
chmod 1777 "$root/tmp"

tar -C "$root" -c . | docker import -c 'CMD ["sh"]' - "$image" >/dev/null
echo "made $image"
