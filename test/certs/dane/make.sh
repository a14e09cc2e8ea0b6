#!/bin/sh
# make.sh - regenerates the DANE test certificates in this directory
# (they are committed; run this only to change them, and then update the
# digests hard-coded in test/unit/dane_test.c, which this script prints
# at the end).  ECDSA P-256 throughout; validity is a century except for
# the two expired certificates (2001-2002).  Every certificate comes as
# NAME.pem and NAME.der; NAME.spki.der is its SubjectPublicKeyInfo.
#
#   ee                 self-signed, SAN mx.dane.test (DANE-EE 3 x x)
#   ee-expired         self-signed, SAN mx.dane.test, expired in 2002
#   ca                 the private CA (DANE-TA 2 x x)
#   leaf               signed by ca, SAN mx.dane.test
#   wrong              signed by ca, SAN wrong.dane.test
#   leaf-expired       signed by ca, SAN mx.dane.test, expired in 2002
#   wild               signed by ca, SAN *.dane.test, CN wildcard.example
#   cnonly             signed by ca, no SAN, CN mx.dane.test
#   forged             SAN mx.dane.test, issuer name "ferry dane CA" but
#                      signed by another key (forged-ca): does not verify
#   root, int, deep    a 2-level chain: root signs int, int signs deep
#                      (SAN mx.dane.test)
# NAME.key are the private keys (the rig's test servers need them).
set -eu
cd "$(dirname "$0")"
DAYS=36500
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$1.key" 2>/dev/null; }

# selfsigned NAME CN SAN
selfsigned() {
	ec "$1"
	openssl req -x509 -new -key "$1.key" -days $DAYS -subj "/CN=$2" \
	    -addext "subjectAltName=$3" -out "$1.pem"
}

# ca NAME CN [ISSUER]: a CA certificate, self-signed or signed by ISSUER
ca() {
	ec "$1"
	if [ $# -eq 2 ]; then
		openssl req -x509 -new -key "$1.key" -days $DAYS -subj "/CN=$2" \
		    -addext "basicConstraints=critical,CA:TRUE" \
		    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"
		return
	fi
	openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
	printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' \
	    >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" \
	    -CAcreateserial -days $DAYS -extfile "$1.ext" -out "$1.pem" \
	    2>/dev/null
	rm -f "$1.csr" "$1.ext"
}

# leaf NAME CN SAN(or "") ISSUER [ISSUER-KEY]
leaf() {
	ec "$1"
	openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
	printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
	    >"$1.ext"
	[ -n "$3" ] && printf 'subjectAltName=%s\n' "$3" >>"$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "${5:-$4}.key" \
	    -CAcreateserial -days $DAYS -extfile "$1.ext" -out "$1.pem" \
	    2>/dev/null
	rm -f "$1.csr" "$1.ext"
}

# expired NAME ISSUER(or "" for self-signed): `openssl ca` back-dates,
# req/x509 cannot.
expired() {
	ec "$1"
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
	openssl req -new -key "$1.key" -subj "/CN=mx.dane.test" \
	    -addext "subjectAltName=DNS:mx.dane.test" -out "$d/req.csr"
	if [ -n "$2" ]; then
		openssl ca -batch -config "$d/ca.cnf" -cert "$2.pem" \
		    -keyfile "$2.key" -startdate 20010101000000Z \
		    -enddate 20020101000000Z -in "$d/req.csr" \
		    -out "$d/out.pem" 2>/dev/null
	else
		openssl ca -batch -selfsign -config "$d/ca.cnf" \
		    -keyfile "$1.key" -startdate 20010101000000Z \
		    -enddate 20020101000000Z -in "$d/req.csr" \
		    -out "$d/out.pem" 2>/dev/null
	fi
	openssl x509 -in "$d/out.pem" -out "$1.pem"
	rm -rf "$d"
}

selfsigned ee mx.dane.test "DNS:mx.dane.test"
expired ee-expired ""
ca ca "ferry dane CA"
leaf leaf mx.dane.test "DNS:mx.dane.test" ca
leaf wrong wrong.dane.test "DNS:wrong.dane.test" ca
expired leaf-expired ca
leaf wild wildcard.example "DNS:*.dane.test" ca
leaf cnonly mx.dane.test "" ca
ca forged-ca "ferry dane CA"
leaf forged mx.dane.test "DNS:mx.dane.test" forged-ca
rm -f forged-ca.pem forged-ca.key
ca root "ferry dane root"
ca int "ferry dane intermediate" root
leaf deep mx.dane.test "DNS:mx.dane.test" int

for c in ee ee-expired ca leaf wrong leaf-expired wild cnonly forged root \
    int deep; do
	openssl x509 -in "$c.pem" -outform DER -out "$c.der"
	openssl x509 -in "$c.pem" -noout -pubkey |
	    openssl pkey -pubin -outform DER -out "$c.spki.der"
done
rm -f ./*.srl
chmod 0644 ./*.pem ./*.der
chmod 0600 ./*.key

# The values test/unit/dane_test.c hard-codes.
for c in ee ca; do
	echo "$c 0 1 $(sha256sum <"$c.der" | cut -d' ' -f1)"
	echo "$c 1 1 $(sha256sum <"$c.spki.der" | cut -d' ' -f1)"
	echo "$c 1 2 $(sha512sum <"$c.spki.der" | cut -d' ' -f1)"
	echo "$c 1 0 $(od -An -v -tx1 <"$c.spki.der" | tr -d ' \n')"
done
