# Shared by scripts/dev, scripts/test and .ci/run: install what the project needs when it
# is missing, from Debian's packages and PyPI only. Source it; it defines functions.

# Versions checked with this project; newer ones are likely fine.
CARGO_LAMBDA_VERSION=1.9.2

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install it yourself, or install sudo)"
  fi
}

apt_updated=
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these packages yourself: $*"
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The folder holding initdb and pg_ctl: PG_BINDIR, PATH, or Debian's versioned folder.
pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v initdb)")"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres() {
  local bindir; bindir=$(pg_bindir)
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    apt_install postgresql postgresql-contrib
    bindir=$(pg_bindir)
    [ -x "$bindir/initdb" ] || die "PostgreSQL installed but initdb not found; set PG_BINDIR"
  fi
  PG_BINDIR=$bindir
  export PG_BINDIR
  # Debian's package stops its own default cluster's autostart from mattering to us, but
  # in containers without systemd nothing starts it anyway; ours are separate clusters.
}

# PgBouncer from Debian (1.18: older than Neon's pooler, so what works through it works
# through Neon's), for the tests of the api behind a transaction-mode pooler.
ensure_pgbouncer() {
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
  [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || die "installed pgbouncer but cannot find it"
}

ensure_pip_tool() { # command, pip requirement...
  local cmd=$1; shift
  if ! command -v "$cmd" >/dev/null 2>&1; then
    pip_install "$@"
    command -v "$cmd" >/dev/null 2>&1 || die "installed $* but \`$cmd\` is not on PATH (is pip's bin folder on PATH?)"
  fi
}

ensure_moto() {
  # Server mode needs the [server] extra (flask); moto_server alone is not enough proof.
  if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import flask, flask_cors' >/dev/null 2>&1; then
    pip_install "moto[server]"
  fi
  command -v moto_server >/dev/null 2>&1 || die "installed moto[server] but moto_server is not on PATH"
}

ensure_pyyaml() {
  # The workflow files are checked by parsing them (actionlint's PyPI package downloads its
  # binary from GitHub at install time, which this network does not reach).
  python3 -c 'import yaml' >/dev/null 2>&1 || pip_install pyyaml
}

pip_install() {
  command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 || apt_install python3-pip
  say "pip install $*"
  local pip; pip=$(command -v pip3 || command -v pip)
  # Debian's own Python refuses system-wide installs without the flag.
  "$pip" install --quiet --disable-pip-version-check "$@" \
    || "$pip" install --quiet --disable-pip-version-check --break-system-packages "$@"
  hash -r
}

ensure_cargo_lambda() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs) first"
  ensure_pip_tool cargo-lambda "cargo-lambda==$CARGO_LAMBDA_VERSION" ziglang
}

# Runs a PostgreSQL tool, as the postgres account when we are root (initdb refuses root).
pg_run() {
  local tool=$1; shift
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "PostgreSQL refuses to run as root and there is no postgres account"
    runuser -u postgres -- "$PG_BINDIR/$tool" "$@"
  else
    "$PG_BINDIR/$tool" "$@"
  fi
}
