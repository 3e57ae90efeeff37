#!/usr/bin/env bash
# Makes sure a Java 17+ runtime is on this machine: the Spark engine's tests (pyspark in local
# mode, tests/integration/training/test_spark.py) start a JVM. Installs Debian's
# `openjdk-17-jre-headless` when no Java 17+ is found (JAVA_HOME, java on PATH, /usr/lib/jvm);
# rankswap_training.sparkengine.java_home then picks one the same way (docs/DATA.md).
set -euo pipefail
major() {  # the major version `$1 -version` reports (1.8 -> 8), 0 if none
  "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' | head -1 |
    awk '{ if ($1 == 1) print $2 + 0; else print $1 + 0 } END { if (NR == 0) print 0 }'
}
candidates=()
[ -n "${JAVA_HOME:-}" ] && candidates+=("${JAVA_HOME}/bin/java")
command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
for j in /usr/lib/jvm/*/bin/java; do [ -x "$j" ] && candidates+=("$j"); done
for j in "${candidates[@]}"; do
  if [ -x "$j" ] && [ "$(major "$j")" -ge 17 ]; then
    exit 0
  fi
done
if [ "$(id -u)" != 0 ]; then
  echo "Java 17+ is missing (Spark engine tests); install Debian's 'openjdk-17-jre-headless' (or set JAVA_HOME)" >&2
  exit 1
fi
echo "installing Debian's openjdk-17-jre-headless (the Spark engine's tests run pyspark in local mode)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# the JRE's postinst wants the man folder that slim images drop
mkdir -p /usr/share/man/man1
apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
