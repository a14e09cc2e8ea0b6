#!/bin/sh
# make.sh - regenerates the test certificates in this directory (they are
# committed; run this only to change them).  A private CA signs a server
# certificate for the test host names, a client certificate and an
# expired server certificate; one server certificate is self-signed.
# ECDSA P-256 keeps handshakes cheap; rsa.pem is the RSA-2048 variant.
# Validity is a century, except expired.pem (2001-2002).
#
#   ca.pem ca.key              the test CA
#   server.pem server.key      leaf + CA (full chain): localhost,
#                              mx.relay.test, smarthost.test, 127.0.0.1, ::1
#   rsa.pem rsa.key            the same names, RSA-2048, leaf + CA
#   selfsigned.pem .key        self-signed, CN localhost
#   expired.pem expired.key    signed by the CA, expired in 2002
#   client.pem client.key      a client certificate signed by the CA
#   other.pem other.key        another client certificate (never listed)
set -eu
cd "$(dirname "$0")"
DAYS=36500
SAN="DNS:localhost,DNS:mx.relay.test,DNS:smarthost.test,IP:127.0.0.1,IP:::1"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$1" 2>/dev/null; }

ec ca.key
openssl req -x509 -new -key ca.key -days $DAYS -subj "/CN=ferry test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

sign() {	# name CN SAN(or "") extendedKeyUsage
	openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
	printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n' "$4" >"$1.ext"
	[ -n "$3" ] && printf 'subjectAltName=%s\n' "$3" >>"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key \
	    -CAcreateserial -days $DAYS -extfile "$1.ext" -out "$1.leaf"
	cat "$1.leaf" ca.pem >"$1.pem"
	rm -f "$1.csr" "$1.ext" "$1.leaf"
}

ec server.key
sign server localhost "$SAN" serverAuth
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key \
    2>/dev/null
sign rsa localhost "$SAN" serverAuth
ec client.key
sign client "client.relay.test" "" clientAuth
ec other.key
sign other "other.relay.test" "" clientAuth

ec selfsigned.key
openssl req -x509 -new -key selfsigned.key -days $DAYS -subj "/CN=localhost" \
    -addext "subjectAltName=$SAN" -out selfsigned.pem

# An expired certificate needs `openssl ca` (req/x509 cannot back-date).
ec expired.key
d=$(mktemp -d)
: >"$d/index.txt"
echo 01 >"$d/serial"
cat >"$d/ca.cnf" <<CNF
[ ca ]
default_ca = test
[ test ]
dir = $d
database = $d/index.txt
serial = $d/serial
new_certs_dir = $d
default_md = sha256
policy = any
copy_extensions = copy
[ any ]
commonName = supplied
CNF
openssl req -new -key expired.key -subj "/CN=localhost" \
    -addext "subjectAltName=$SAN" -out "$d/expired.csr"
openssl ca -batch -config "$d/ca.cnf" -cert ca.pem -keyfile ca.key \
    -startdate 20010101000000Z -enddate 20020101000000Z \
    -in "$d/expired.csr" -out "$d/expired.leaf" 2>/dev/null
openssl x509 -in "$d/expired.leaf" >expired.pem
cat ca.pem >>expired.pem
rm -rf "$d" ca.srl
chmod 0644 ./*.pem
chmod 0600 ./*.key
