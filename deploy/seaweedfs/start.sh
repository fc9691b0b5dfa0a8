#!/bin/sh
# Starts SeaweedFS (master, volume, filer and S3 in one process) storing under /data, with
# one S3 identity from S3_ACCESS_KEY / S3_SECRET_KEY; the bucket is created by the first
# upload (an admin identity: -s3.autoCreateBucket, SeaweedFS's default). Only the S3 port
# (8333) is meant to be reached, on the compose network only. Browsers come through the
# proxy's /_s3/ with another Host: signatures are checked against S3_EXTERNAL_URL, the
# endpoint the app signs for (AWS_S3_ENDPOINT_URL).
set -eu
: "${S3_ACCESS_KEY:?S3_ACCESS_KEY is not set}"
: "${S3_SECRET_KEY:?S3_SECRET_KEY is not set}"
mkdir -p /data/volumes /data/master
umask 077
cat > /tmp/s3.json <<JSON
{"identities": [{"name": "pubsub", "credentials": [{"accessKey": "${S3_ACCESS_KEY}", "secretKey": "${S3_SECRET_KEY}"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
# Volumes are sparse files of at most SEAWEEDFS_VOLUME_SIZE_MB, SEAWEEDFS_MAX_VOLUMES of them
# (weed's own default, 30 GB volumes counted from the free disk, leaves a small disk none).
exec weed server -dir=/data/volumes -master.dir=/data/master \
    -master.volumeSizeLimitMB="${SEAWEEDFS_VOLUME_SIZE_MB:-1024}" -volume.max="${SEAWEEDFS_MAX_VOLUMES:-100}" \
    -filer -s3 -s3.port=8333 \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config=/tmp/s3.json -s3.externalUrl="${S3_EXTERNAL_URL:-http://seaweedfs:8333}"
