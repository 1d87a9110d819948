# Shared by the scripts in scripts/: toolchain checks, Debian packages, paths.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Builds outlive the clone: a cold build is long on small machines.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/marionette/target}"
RUST_VERSION_MIN="1.85"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages given that are not installed yet.
ensure_debian_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}"
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
    command -v cargo >/dev/null || die "cargo is not installed. Install Rust >= $RUST_VERSION_MIN (rustup.rs, or your distribution's rustup package) and run this again"
    local version
    version="$(rustc --version | awk '{print $2}')"
    if [ "$(printf '%s\n%s\n' "$RUST_VERSION_MIN" "$version" | sort -V | head -1)" != "$RUST_VERSION_MIN" ]; then
        die "Rust $version is older than the $RUST_VERSION_MIN this workspace needs; update it (rustup update) and run this again"
    fi
}

ensure_build_tools() {
    ensure_debian_packages build-essential pkg-config
    ensure_rust
}
