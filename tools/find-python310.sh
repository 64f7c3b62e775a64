#!/bin/sh
# Print the path of a working Python 3.10 interpreter (lava-nc 0.10.0 needs Python < 3.11).
# Order: $PYTHON310, python3.10 on PATH, pyenv, then pyenv's default install folder.
ok() { [ -n "$1" ] && "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
for c in "${PYTHON310:-}" "$(command -v python3.10 2>/dev/null)"; do
  if ok "$c"; then echo "$c"; exit 0; fi
done
if command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$' | sort -t. -k3 -n -r); do
    c="$(pyenv root)/versions/$v/bin/python3.10"
    if ok "$c"; then echo "$c"; exit 0; fi
  done
fi
for c in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
  if ok "$c"; then echo "$c"; exit 0; fi
done
cat >&2 <<'MSG'
error: no Python 3.10 interpreter found.
icl-compiler's Lava backend pins lava-nc 0.10.0, which only imports on Python 3.10.
Install one of:
  pyenv install 3.10.13                           (then re-run make)
  apt-get install python3.10 python3.10-venv      (Debian/Ubuntu with a 3.10 package)
or point PYTHON310=/path/to/python3.10 at an existing interpreter.
MSG
exit 1
