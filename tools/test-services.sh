# Sourced by tools/test.sh: installs (idempotently) and starts the services the
# deployment tests need, on loopback, in a temporary directory, and exports where
# they are. Both are stopped when the test script exits.
#   PostgreSQL (Debian's package): CANDOR_TEST_POSTGRES_URL, CANDOR_TEST_PG_BIN
#   moto (PyPI), an S3-compatible server: CANDOR_TEST_S3_BASE and the AWS_* variables
#   object_store reads (endpoint, dummy credentials, region, plain HTTP allowed).

svc_dir=$(mktemp -d /tmp/candor-services.XXXXXX)
chmod 755 "$svc_dir"
svc_cleanup() {
  if [ -n "${CANDOR_TEST_PG_BIN:-}" ] && [ -d "$svc_dir/pg" ]; then
    runuser -u postgres -- "$CANDOR_TEST_PG_BIN/pg_ctl" -D "$svc_dir/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -f "$svc_dir/moto.pid" ]; then kill "$(cat "$svc_dir/moto.pid")" 2>/dev/null || true; fi
  rm -rf "$svc_dir"
}
trap svc_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- PostgreSQL
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "== installing Debian's postgresql for the PostgreSQL store tests"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
CANDOR_TEST_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_port=$(free_port)
chown postgres "$svc_dir"
runuser -u postgres -- "$CANDOR_TEST_PG_BIN/initdb" -D "$svc_dir/pg" -A trust -U candor >/dev/null
runuser -u postgres -- "$CANDOR_TEST_PG_BIN/pg_ctl" -D "$svc_dir/pg" -l "$svc_dir/pg.log" -w \
  -o "-p $pg_port -k $svc_dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on -c synchronous_commit=on" \
  start >/dev/null
export CANDOR_TEST_PG_BIN
export CANDOR_TEST_POSTGRES_URL="postgres://candor@127.0.0.1:$pg_port/postgres"
echo "== PostgreSQL on 127.0.0.1:$pg_port"

# --- moto (S3-compatible; supports If-None-Match: * conditional puts)
if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto[server] from PyPI for the object-storage tests"
  python3 -m pip install -q 'moto[server]'
fi
s3_port=$(free_port)
moto_server -H 127.0.0.1 -p "$s3_port" >"$svc_dir/moto.log" 2>&1 &
echo $! >"$svc_dir/moto.pid"
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port"
export AWS_ACCESS_KEY_ID=candor-test AWS_SECRET_ACCESS_KEY=candor-test AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
for _ in $(seq 1 100); do
  curl -s -o /dev/null "$AWS_ENDPOINT_URL" && break
  sleep 0.1
done
# One bucket, readable anonymously (a CDN or static host would serve it like this).
python3 - <<'PY'
import json, os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
s3.create_bucket(Bucket="candor-test")
s3.put_bucket_policy(Bucket="candor-test", Policy=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                   "Resource": "arn:aws:s3:::candor-test/*"}]}))
PY
export CANDOR_TEST_S3_BASE="$AWS_ENDPOINT_URL/candor-test"
echo "== moto S3 on 127.0.0.1:$s3_port"
