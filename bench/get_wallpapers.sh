#!/bin/sh
# Fetch large photographs (8+ megapixels) for bench/signatures.py: the full-size wallpapers of
# three Debian packages, unpacked (not installed) into a git-ignored folder.
#   bench/get_wallpapers.sh [DEST]      (default: bench/wallpapers)
set -eu
dest=${1:-$(dirname "$0")/wallpapers}
packages="lomiri-wallpapers ukui-wallpapers plasma-workspace-wallpapers"
mkdir -p "$dest/debs" "$dest/files"
cd "$dest/debs"
for package in $packages; do
    ls "${package}"_*.deb >/dev/null 2>&1 || apt-get download "$package"
done
for deb in *.deb; do
    dpkg-deb -x "$deb" ../files
done
echo "$(find ../files -type f \( -name '*.jpg' -o -name '*.jpeg' -o -name '*.png' \) | wc -l)" \
    "images under $dest/files (bench/signatures.py keeps those of 8+ MP)"
