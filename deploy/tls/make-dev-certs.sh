#!/bin/sh
# A private CA and one certificate for the three NATS nodes (client and route connections), for
# deploy/compose.yaml: writes ca.crt, nats.crt and nats.key next to this script. In production
# use your own CA or cert-manager (see docs/security.md, "TLS certificates"); never commit keys.
set -eu
cd "$(dirname "$0")"
umask 077
days=${DAYS:-825}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=Convoy NATS CA" -keyout ca.key -out ca.crt
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=nats" -keyout nats.key -out nats.csr
cat > nats.ext <<EXT
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:nats-0, DNS:nats-1, DNS:nats-2, DNS:localhost, IP:127.0.0.1
EXT
openssl x509 -req -in nats.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
  -extfile nats.ext -out nats.crt
rm -f nats.csr nats.ext ca.srl
chmod 644 ca.crt nats.crt
chmod 640 nats.key
echo "wrote $(pwd)/ca.crt, nats.crt, nats.key (keep ca.key offline: it signs new certificates)"
