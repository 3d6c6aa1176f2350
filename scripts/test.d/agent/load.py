"""Steady LLM-like traffic for the reliability tests: THREADS workers send requests
(streamed, a few hundred ms each) to the provider hosts until STOPFILE exists.
Prints the number of completed requests at the end.
  load.py STOPFILE THREADS
(the CA comes from SSL_CERT_FILE)."""
import os
import sys
import threading
import urllib.request

stop, threads = sys.argv[1], int(sys.argv[2])
hosts = ["api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com"]
done = [0]
lock = threading.Lock()


def work(i):
    n = i
    while not os.path.exists(stop):
        host = hosts[n % len(hosts)]
        n += 1
        body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hello there"}]}'
        req = urllib.request.Request(f"https://{host}/v1/chat/completions?chunks=12&delay=15", data=body)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            with lock:
                done[0] += 1
        except Exception as e:  # the provider is always up; report and go on
            print(f"load: {e}", file=sys.stderr)


ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(done[0])
