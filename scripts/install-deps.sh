#!/usr/bin/env bash
# Installs what EventFlow needs on a Debian machine, skipping what is already there:
# the C libraries it links (liblz4, libpq, OpenSSL headers), PostgreSQL for the embedded mode,
# and, with --python, the existing Kafka clients the tests run against the broker: kafka-python
# and confluent-kafka (librdkafka 2.x) from PyPI, kcat (librdkafka) from Debian, and prometheus-client
# (its text parser checks the broker's /metrics).
set -euo pipefail

packages=(liblz4-dev libpq-dev libssl-dev postgresql lz4 pkg-config xxd)
if [[ "${1:-}" == "--python" ]]; then packages+=(kcat); fi
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        sudo_cmd=()
    elif command -v sudo >/dev/null; then
        sudo_cmd=(sudo)
    else
        echo "install-deps: missing Debian packages: ${missing[*]} (run as root: apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # Debian's postgresql package starts a system cluster on 5432; EventFlow runs its own.
fi

if [[ "${1:-}" == "--python" ]]; then
    if ! python3 -c 'import kafka, lz4.frame, confluent_kafka, prometheus_client' 2>/dev/null; then
        echo "install-deps: installing kafka-python, lz4, confluent-kafka and prometheus-client from PyPI"
        python3 -m pip install --quiet kafka-python==3.0.12 lz4 'confluent-kafka>=2.3,<3' 'prometheus-client>=0.20,<1'
    fi
fi
