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

# Node and npm, for the JavaScript clients the tests drive (Debian 12's Node 18 will do).
ensure_node() {
    command -v node >/dev/null && command -v npm >/dev/null && return 0
    ensure_debian_packages nodejs npm
}

# The npm packages of the project in $1, exactly as its package-lock.json has them.
ensure_npm_packages() {
    local dir="$1"
    [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ] && return 0
    log "installing the npm packages of $dir (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# The web console, built into daemons/console/dist from its lockfile (the
# gateway serves it; the marionette-console package ships it).
build_console() {
    ensure_node
    ensure_npm_packages "$REPO_ROOT/daemons/console"
    log "building the web console (daemons/console: type checks, then vite build)"
    (cd "$REPO_ROOT/daemons/console" && npm run --silent build) || die "the web console did not build: run npm run build in daemons/console to see why"
}

# A persistent target dir only grows: each change of a dependency leaves a
# whole set of artifacts behind and incremental caches pile up, until a build
# or a test's files meet a full disk (a CI run died of it once). Before a
# build, when the target dir's disk has less than $2 GB free, this removes
# the incremental caches (they only speed up rebuilds), then if still short
# the whole profile $1 (dev or release: a cold build follows), then gives up.
ensure_room_to_build() {
    local profile="$1" need_gb="$2" dir
    case "$profile" in dev) dir=debug ;; *) dir="$profile" ;; esac
    mkdir -p "$CARGO_TARGET_DIR"
    free_gb() { df --output=avail -BG "$CARGO_TARGET_DIR" | tail -1 | tr -dc 0-9; }
    [ "$(free_gb)" -ge "$need_gb" ] && return 0
    log "only $(free_gb) GB free beside $CARGO_TARGET_DIR ($need_gb wanted): removing its incremental caches"
    rm -rf "$CARGO_TARGET_DIR"/*/incremental
    [ "$(free_gb)" -ge "$need_gb" ] && return 0
    log "still only $(free_gb) GB free: removing the $profile build in $CARGO_TARGET_DIR/$dir (a cold build follows)"
    rm -rf "${CARGO_TARGET_DIR:?}/$dir"
    [ "$(free_gb)" -ge "$need_gb" ] && return 0
    die "only $(free_gb) GB free on the disk of $CARGO_TARGET_DIR, and $need_gb are needed to build and test: free some space (df -h) and run this again"
}

ensure_rust() {
    command -v cargo >/dev/null || die "cargo is not installed. Install Rust >= $RUST_VERSION_MIN (rustup.rs, or your distribution's rustup package) and run this again"
    local version
    version="$(rustc --version | awk '{print $2}')"
    if [ "$(printf '%s\n%s\n' "$RUST_VERSION_MIN" "$version" | sort -V | head -1)" != "$RUST_VERSION_MIN" ]; then
        die "Rust $version is older than the $RUST_VERSION_MIN this workspace needs; update it (rustup update) and run this again"
    fi
}

# rustfmt and clippy, which scripts/test runs: rustup's minimal profile lacks them.
ensure_rust_checks() {
    cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 && return 0
    command -v rustup >/dev/null || die "cargo fmt and cargo clippy are missing; install your Rust's rustfmt and clippy and run this again"
    log "installing rustfmt and clippy (rustup component add)"
    rustup component add rustfmt clippy
}

# cargo-deny, pinned, built once into a cache outside the clone (about four
# minutes on two cores) from crates.io.
CARGO_DENY_VERSION=0.20.2
CARGO_DENY="$HOME/.cache/marionette/tools/bin/cargo-deny"
ensure_cargo_deny() {
    [ -x "$CARGO_DENY" ] && "$CARGO_DENY" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION" && return 0
    log "building cargo-deny $CARGO_DENY_VERSION (once; into $HOME/.cache/marionette/tools)"
    # Its own target dir: its dependencies must not evict the workspace's build.
    CARGO_TARGET_DIR="$HOME/.cache/marionette/tools/target" \
        cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --root "$HOME/.cache/marionette/tools"
    rm -rf "$HOME/.cache/marionette/tools/target"
}

ensure_build_tools() {
    # libclang-dev: the RocksDB bindings are generated by bindgen at build time.
    ensure_debian_packages build-essential pkg-config libclang-dev
    ensure_rust
}
