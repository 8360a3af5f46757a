# Sourced by scripts/demo and scripts/test: make the virtual environment when it is missing,
# install the package into it with the README's setup command when it is new or
# pyproject.toml changed since, and activate it.
# PYTHON picks the interpreter (default python3, 3.10 or newer); EVALROWS_VENV the directory.

venv="${EVALROWS_VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -f "$venv/bin/activate" ] && [ ! -f "$venv/Scripts/activate" ]; then
    if ! command -v "$python" >/dev/null 2>&1; then
        echo "$0: no $python here: install Python 3.10 or newer, or name it in PYTHON=" >&2
        exit 1
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "$0: $("$python" --version 2>&1) is too old: pytest-evalrows needs 3.10 or newer" >&2
        exit 1
    fi
    echo "$0: creating the virtual environment $venv" >&2
    # Debian and Ubuntu ship venv apart from Python: python3-venv.
    "$python" -m venv "$venv" || {
        echo "$0: $python -m venv failed (on Debian or Ubuntu: apt install python3-venv)" >&2
        exit 1
    }
fi

if [ -f "$venv/Scripts/activate" ]; then  # Windows (Git Bash)
    # shellcheck disable=SC1091
    . "$venv/Scripts/activate"
else
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
fi

stamp="$venv/.evalrows-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "$0: installing pytest-evalrows and its development tools into $venv" >&2
    python -m pip install -q --upgrade pip
    # The README's setup command.
    pip install -e ".[dev]"
    touch "$stamp"
fi
