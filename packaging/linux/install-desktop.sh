#!/usr/bin/env bash
# Install (or remove) the Linux desktop integration for the current user: the menu entry, the icon
# and the MIME type of project files named *.workbench.toml (see packaging/README.md).
#   bash packaging/linux/install-desktop.sh                 the bundle in dist/, else `workbench` on PATH
#   bash packaging/linux/install-desktop.sh --exec PATH     this executable instead
#   bash packaging/linux/install-desktop.sh --uninstall     remove what this script installed
# Files go under ${XDG_DATA_HOME:-~/.local/share}; nothing is written elsewhere.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ID=model-surgery-workbench
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
DESKTOP=$DATA/applications/$ID.desktop
ICON=$DATA/icons/hicolor/scalable/apps/$ID.svg
MIME=$DATA/mime/packages/$ID.xml
MARK="X-Model-Surgery-Workbench-Installed=true"  # tells our entry apart from one somebody else wrote

die() { echo "error: install-desktop.sh: $*" >&2; exit 2; }

refresh() {  # the caches desktops read; each tool is optional (missing on minimal systems)
  if command -v update-mime-database >/dev/null; then update-mime-database "$DATA/mime"; fi
  if command -v update-desktop-database >/dev/null; then update-desktop-database -q "$DATA/applications"; fi
  if command -v gtk-update-icon-cache >/dev/null; then gtk-update-icon-cache -q -f -t "$DATA/icons/hicolor" || true; fi
}

ours() { [ ! -e "$DESKTOP" ] || grep -qxF "$MARK" "$DESKTOP"; }

exec_path=""
case "${1:-}" in
  --uninstall)
    ours || die "$DESKTOP was not installed by this script; left as it is"
    rm -f "$DESKTOP" "$ICON" "$MIME"
    mkdir -p "$DATA/mime/packages" "$DATA/applications" && refresh
    echo "removed the desktop entry, icon and MIME type from $DATA"
    exit 0 ;;
  --exec)
    [ $# -eq 2 ] || die "--exec needs the path of the executable"
    exec_path=$2 ;;
  "") ;;
  *) die "unknown argument '$1' (use --exec PATH or --uninstall)" ;;
esac

if [ -z "$exec_path" ]; then
  if [ -x "$ROOT/dist/$ID/$ID" ]; then
    exec_path=$ROOT/dist/$ID/$ID
  elif command -v workbench >/dev/null; then
    exec_path=$(command -v workbench)
  else
    die "no bundle at $ROOT/dist/$ID (bash scripts/bundle.sh) and no \`workbench\` on PATH; or give --exec PATH"
  fi
fi
[ -x "$exec_path" ] && [ -f "$exec_path" ] || die "$exec_path is not an executable file"
exec_path=$(cd "$(dirname "$exec_path")" && pwd)/$(basename "$exec_path")
# The desktop entry spec quotes arguments with "..." and escapes inside them; paths that would need
# escaping beyond spaces are refused rather than half-quoted.
case "$exec_path" in
  *[\"\`\$\\%]*) die "the path $exec_path has a character (\" \` \$ \\ %) that a desktop entry cannot quote simply" ;;
esac
ours || die "$DESKTOP exists and was not installed by this script; remove it first"

mkdir -p "$(dirname "$DESKTOP")" "$(dirname "$ICON")" "$(dirname "$MIME")"
tmp=$(mktemp "$DESKTOP.XXXXXX")
trap 'rm -f "$tmp"' EXIT
sed -e "s|^Exec=.*|Exec=\"$exec_path\" %f|" "$HERE/$ID.desktop" > "$tmp"
echo "$MARK" >> "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$DESKTOP"
install -m644 "$HERE/../workbench.svg" "$ICON"
install -m644 "$HERE/$ID.xml" "$MIME"
refresh
echo "installed $DESKTOP (runs $exec_path), the icon, and the MIME type for *.workbench.toml"
