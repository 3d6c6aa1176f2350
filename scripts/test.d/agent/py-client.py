"""One HTTP/1.1 request with Python's standard library: py-client.py URL BODY
(the CA comes from SSL_CERT_FILE)."""
import sys
import urllib.request

req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers={"content-type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as r:
    print(f"python: {len(r.read())} bytes")
