#!/usr/bin/env bash
# tls_ca.sh DIR: a throwaway certificate authority and a server certificate
# for localhost, 127.0.0.1 and ::1 that it signed, for the TLS tests.
#
# Writes into DIR (created, mode 0700):
#   ca.pem    the authority's certificate: what clients trust
#             (DENO_CERT=DIR/ca.pem for the Deno CLI,
#             NODE_EXTRA_CA_CERTS=DIR/ca.pem for Node, curl --cacert)
#   cert.pem  the server certificate (nginx ssl_certificate, caddy tls)
#   key.pem   its private key
# The authority's own key is deleted once it has signed: nothing else can
# ever be signed with it.
#
# Why an authority and not one self-signed certificate: the Deno CLI
# (rustls) refuses a certificate that is both the trust anchor and the
# server's (a plain `openssl req -x509` one is CA:TRUE: CaUsedAsEndEntity),
# and Node wants the server's certificate to chain to a CA it trusts. So the
# server certificate says CA:FALSE, names its hosts in subjectAltName (the
# common name is not looked at) and is for serverAuth; the authority says
# CA:TRUE and may sign certificates.
set -eu

dir=${1:?usage: tls_ca.sh DIR}
mkdir -p "$dir"
chmod 0700 "$dir"
cd "$dir"

ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

# shellcheck disable=SC2086
openssl req -x509 $ec -days 2 -subj "/CN=denokv-fcgi test CA $$" \
	-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-keyout ca.key -out ca.pem 2>/dev/null

# shellcheck disable=SC2086
openssl req $ec -subj /CN=localhost -keyout key.pem -out cert.csr 2>/dev/null

cat >cert.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	-days 2 -extfile cert.ext -out cert.pem 2>/dev/null

rm -f ca.key ca.srl cert.csr cert.ext
chmod 0600 key.pem
openssl verify -CAfile ca.pem cert.pem >/dev/null
