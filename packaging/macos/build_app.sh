#!/usr/bin/env bash
# macOS: memviz.app and a .dmg from the same PyInstaller one-folder build.
# Run on a Mac (hdiutil, iconutil and sips exist only there):
#   python3 -m pip install -e ".[package]"
#   bash packaging/macos/build_app.sh
# Gives dist/memviz.app and dist/memviz-<version>.dmg. Sign and notarize with your
# own identity afterwards (codesign --deep --options runtime, notarytool submit).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(python3 -c 'import memviz; print(memviz.__version__)')
python3 -m PyInstaller --noconfirm packaging/memviz.spec

app=dist/memviz.app
rm -rf "$app"
mkdir -p "$app/Contents/MacOS" "$app/Contents/Resources"
cp -R dist/memviz/. "$app/Contents/MacOS/"
sed "s/@VERSION@/$version/g" packaging/macos/Info.plist > "$app/Contents/Info.plist"

# the icon: every size iconutil wants, from the committed PNGs
iconset=$(mktemp -d)/memviz.iconset
mkdir -p "$iconset"
for size in 16 32 128 256 512; do
  sips -z $size $size resources/icons/memviz-512.png --out "$iconset/icon_${size}x${size}.png" >/dev/null
  double=$((size * 2))
  sips -z $double $double resources/icons/memviz-512.png --out "$iconset/icon_${size}x${size}@2x.png" >/dev/null
done
iconutil -c icns "$iconset" -o "$app/Contents/Resources/memviz.icns"

# the same check the Linux package runs: two steps in a real worker, a screenshot
"$app/Contents/MacOS/memviz" --smoke-test "$(mktemp -d)/smoke.png"

dmg=dist/memviz-$version.dmg
rm -f "$dmg"
staging=$(mktemp -d)
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
hdiutil create -volname "memviz $version" -srcfolder "$staging" -ov -format UDZO "$dmg"
echo "built $app and $dmg"
