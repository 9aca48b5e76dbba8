#!/usr/bin/env bash
# Development TLS material for the gateway's LDAPS/StartTLS listeners: a throwaway CA and a server
# certificate for 127.0.0.1 / localhost, written next to this script. Never use these in production,
# and never commit the keys (.gitignore keeps them out).
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=ldap-gateway dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout dev-ca.key -out dev-ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > server.ext
openssl x509 -req -in server.csr -CA dev-ca.pem -CAkey dev-ca.key -CAcreateserial -days 825 -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext dev-ca.srl
chmod 600 server.key dev-ca.key
echo "certs: wrote $(pwd)/server.crt, server.key (for 127.0.0.1, localhost) and dev-ca.pem (trust this on clients)"
