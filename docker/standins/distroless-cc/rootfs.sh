#!/bin/sh
# Assembles a distroless root filesystem in $1 from the installed Debian
# packages named after it: their files (documentation left out), at their
# canonical paths, under the same /bin, /lib... links to /usr as the system
# they come from; then users, groups, name service switch, CA bundle, /tmp.
# Proves at the end that a dynamically linked program runs in it.
set -eu

out=$1
shift
mkdir -p "$out"

# Merged /usr: /lib -> usr/lib and so on, exactly as here.
for top in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$top" ]; then
        ln -s "$(readlink "/$top")" "$out/$top"
    fi
done

for package in "$@"; do
    dpkg-query -L "$package" | while IFS= read -r path; do
        case "$path" in
            /usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/* | /usr/share/info/* | /usr/share/bug/*) continue ;;
        esac
        # Directories come with the files in them.
        if [ -d "$path" ] && [ ! -L "$path" ]; then
            continue
        fi
        [ -e "$path" ] || [ -L "$path" ] || continue
        directory=$(readlink -f "$(dirname "$path")")
        mkdir -p "$out$directory"
        cp -a "$directory/$(basename "$path")" "$out$directory/"
    done
done

mkdir -p "$out/usr/bin" "$out/usr/sbin" "$out/etc/ssl/certs" "$out/root" "$out/home/nonroot" "$out/tmp" "$out/var/tmp"
cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
staff:x:50:
nogroup:x:65534:
nonroot:x:65532:
GROUP
cat >"$out/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
ethers: files
rpc: files
NSS
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
chmod 0700 "$out/root"
chown 65532:65532 "$out/home/nonroot"
chmod 0700 "$out/home/nonroot"
chmod 1777 "$out/tmp" "$out/var/tmp"

# A dynamically linked program must run inside (env without arguments
# prints the environment).
cp /usr/bin/env "$out/standin-check"
if ! chroot "$out" /standin-check >/dev/null; then
    echo "rootfs.sh: a dynamically linked program does not run in $out" >&2
    exit 1
fi
rm -f "$out/standin-check"
echo "rootfs.sh: $(du -sh "$out" | cut -f1) in $out"
