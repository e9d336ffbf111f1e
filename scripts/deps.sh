# Sourced by duet's scripts: the Debian packages duet needs, and a function that makes sure they are
# installed (installing them when run as root; otherwise printing the exact command and stopping).

DUET_PACKAGES=(
  g++ cmake make pkg-config      # the toolchain
  libuv1-dev                     # the event loop
  libssl-dev openssl curl        # TLS (OpenSSL 3); the CLI and curl as TLS peers in the tests
  node-llhttp                    # llhttp's C sources, built as a static library
  zlib1g-dev                     # gzip and deflate response bodies
  catch2                         # tests (v2)
  libbenchmark-dev               # micro-benchmarks (bench/)
  libcli11-dev libfmt-dev nlohmann-json3-dev  # flags_server and the examples: options, output, JSON
  famfamfam-flag-gif iso-codes   # the flag tree flags_server serves, made at build time
  nginx-light python3            # real HTTP peers for the client tests
)
# Node.js is the third real peer; Debian's nodejs provides it where the machine has none of its own.
command -v node > /dev/null 2>&1 || DUET_PACKAGES+=(nodejs)

duet_ensure_packages() {
  local missing=() pkg
  for pkg in "${DUET_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "duet needs these Debian packages, which are not installed. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "== installing: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}
