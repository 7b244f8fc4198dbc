#!/bin/sh
# Makes the image debian:bookworm-slim, which every image of compose.yaml builds on,
# from Debian's archive with debootstrap: for a Docker host that reaches Debian's
# mirrors but no container registry. The certificate authorities the host added
# (/usr/local/share/ca-certificates) are trusted in it too, so that a build behind a
# TLS-inspecting proxy the host trusts can reach PyPI.
#
#     sudo deploy/compose/debian-base.sh [TAG [MIRROR]]
set -eu

tag=${1:-debian:bookworm-slim}
mirror=${2:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >&2
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >&2
fi
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$tag"
