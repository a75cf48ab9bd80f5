#!/usr/bin/env bash
# Installs the Debian packages pgt needs when they are missing: GNU Unifont (the glyph
# substrate), the fortune files (the embedded default corpus) and python3-venv.
# Where apt is not available, point pgt at a font with --font or PGT_FONT instead.
set -euo pipefail
need=()
[ -f /usr/share/fonts/opentype/unifont/unifont.otf ] || [ -n "${PGT_FONT:-}" ] || need+=(fonts-unifont unifont)
[ -f /usr/share/fonts/opentype/unifont/unifont_upper.otf ] || [ -n "${PGT_FONT:-}" ] || need+=(fonts-unifont)
[ -d /usr/share/games/fortunes ] || need+=(fortunes)
[ -d /usr/share/games/fortunes/ru ] || need+=(fortunes-ru)
[ -d /usr/share/games/fortunes/de ] || need+=(fortunes-de)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null; then
    echo "error: missing system packages (${need[*]}) and no apt-get here; install GNU Unifont and set PGT_FONT=/path/to/unifont.otf" >&2
    exit 1
fi
echo "Installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
