"""The webhooks guide's receiver, as a user of the guide would run it:
Flask's own server (app.run, threaded), the guide's verify() and
webhook() handlers.  process_user is a no-op here, so the figure is the
cost of receiving: signature check, JSON parse, one thread per account.

Reference for the ingest benchmark (bench/ingest.py).  The app secret
comes from the environment (BENCH_APP_SECRET); the port from argv[1].
Debian's Flask, under /usr/bin/python3.
"""
from hashlib import sha256
import hmac
import json
import logging
import os
import sys
import threading

from flask import Flask, Response, abort, request

APP_SECRET = os.environ["BENCH_APP_SECRET"].encode()
app = Flask(__name__)


@app.route('/webhook', methods=['GET'])
def verify():
    '''Echo the challenge back, as the guide does.'''
    resp = Response(request.args.get('challenge'))
    resp.headers['Content-Type'] = 'text/plain'
    resp.headers['X-Content-Type-Options'] = 'nosniff'
    return resp


def process_user(account):
    '''No-op: this bench measures receiving, not the work.'''


@app.route('/webhook', methods=['POST'])
def webhook():
    '''The guide's handler: check the signature, start a thread per
    account, answer at once.'''
    signature = request.headers.get('X-Dropbox-Signature')
    if not hmac.compare_digest(signature, hmac.new(
            APP_SECRET, request.data, sha256).hexdigest()):
        abort(403)
    for account in json.loads(request.data)['list_folder']['accounts']:
        threading.Thread(target=process_user, args=(account,)).start()
    return ''


if __name__ == '__main__':
    # The request log line per request is Flask's default; it is kept
    # off so the reference is not slowed by writing to a pipe.
    logging.getLogger('werkzeug').setLevel(logging.ERROR)
    app.run(host='127.0.0.1', port=int(sys.argv[1]), threaded=True)
