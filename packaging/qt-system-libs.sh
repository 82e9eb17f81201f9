#!/usr/bin/env bash
# The system libraries Qt's xcb platform plugin needs that this machine lacks.
# `--install` installs them with apt-get (as root, or through sudo); without it,
# the packages are only listed. Used by `make run` on a machine with a screen; the
# .deb declares the same packages as dependencies.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # it runs from any folder
venv_python=${VENV_PYTHON:-$repo/.venv/bin/python}
plugin_dir=$("$venv_python" -c 'import os, PySide6; print(os.path.join(os.path.dirname(PySide6.__file__), "Qt"))')
libs=("$plugin_dir/plugins/platforms/libqxcb.so" "$plugin_dir"/lib/libQt6XcbQpa.so.*)

declare -A package_of=(
  [libxcb-icccm.so.4]=libxcb-icccm4 [libxcb-keysyms.so.1]=libxcb-keysyms1
  [libxcb-cursor.so.0]=libxcb-cursor0 [libxkbcommon-x11.so.0]=libxkbcommon-x11-0
  [libxkbcommon.so.0]=libxkbcommon0 [libxcb-image.so.0]=libxcb-image0
  [libxcb-render-util.so.0]=libxcb-render-util0 [libxcb-shape.so.0]=libxcb-shape0
  [libxcb-randr.so.0]=libxcb-randr0 [libxcb-xkb.so.1]=libxcb-xkb1 [libxcb-shm.so.0]=libxcb-shm0
  [libxcb-sync.so.1]=libxcb-sync1 [libxcb-xfixes.so.0]=libxcb-xfixes0
  [libxcb-render.so.0]=libxcb-render0 [libxcb-util.so.1]=libxcb-util1
  [libxcb-xinput.so.0]=libxcb-xinput0 [libxcb.so.1]=libxcb1 [libX11-xcb.so.1]=libx11-xcb1
  [libX11.so.6]=libx11-6 [libEGL.so.1]=libegl1 [libGL.so.1]=libgl1 [libOpenGL.so.0]=libopengl0
  [libfontconfig.so.1]=libfontconfig1 [libfreetype.so.6]=libfreetype6
  [libdbus-1.so.3]=libdbus-1-3 [libglib-2.0.so.0]=libglib2.0-0
)

missing=$(for lib in "${libs[@]}"; do [ -e "$lib" ] && ldd "$lib"; done | awk '/not found/ {print $1}' | sort -u)
# libxcb-cursor0 is loaded at run time, not linked: check it by name.
ldconfig -p | grep -q 'libxcb-cursor.so.0' || missing=$(printf '%s\nlibxcb-cursor.so.0' "$missing")
packages=()
for lib in $missing; do
  if [ -n "${package_of[$lib]:-}" ]; then packages+=("${package_of[$lib]}"); else
    echo "memviz: Qt needs $lib, which no known package provides here" >&2; fi
done
[ ${#packages[@]} -eq 0 ] && exit 0
echo "Qt's xcb plugin needs: ${packages[*]}"
[ "${1:-}" = "--install" ] || exit 0
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
