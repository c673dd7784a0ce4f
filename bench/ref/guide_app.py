"""The webhooks guide's Markdown-to-HTML app, as written in the guide:
Flask webhook, one thread per account running process_user, which lists
changes with the official Dropbox SDK, converts every .md with the
`markdown` package and uploads the .html, keeping tokens and cursors in
Redis.

Reference for the end-to-end benchmark (bench/e2e.py).  The runner sets
DROPBOX_API_HOST etc. (the SDK reads them at import) and
REQUESTS_CA_BUNDLE to the cloud's CA, BENCH_APP_SECRET and
BENCH_REDIS_PORT; the port to serve on is argv[1].

Two changes from the guide, both forced by Python 3: Redis answers are
decoded (decode_responses=True: a bytes token would be sent as "b'...'"),
and the downloaded bytes are decoded before markdown() and the HTML
encoded before upload (markdown() takes str).
"""
from hashlib import sha256
import hmac
import json
import logging
import os
import sys
import threading

import redis
from dropbox import Dropbox
from dropbox.files import DeletedMetadata, FolderMetadata, WriteMode
from flask import Flask, Response, abort, request
from markdown import markdown

APP_SECRET = os.environ["BENCH_APP_SECRET"].encode()
redis_client = redis.Redis(host='127.0.0.1',
                           port=int(os.environ["BENCH_REDIS_PORT"]),
                           decode_responses=True)
app = Flask(__name__)


@app.route('/webhook', methods=['GET'])
def verify():
    '''Respond to the webhook verification by echoing the challenge.'''
    resp = Response(request.args.get('challenge'))
    resp.headers['Content-Type'] = 'text/plain'
    resp.headers['X-Content-Type-Options'] = 'nosniff'
    return resp


@app.route('/webhook', methods=['POST'])
def webhook():
    '''Receive a list of changed user IDs and process each.'''
    signature = request.headers.get('X-Dropbox-Signature')
    if not hmac.compare_digest(signature, hmac.new(
            APP_SECRET, request.data, sha256).hexdigest()):
        abort(403)
    for account in json.loads(request.data)['list_folder']['accounts']:
        threading.Thread(target=process_user, args=(account,)).start()
    return ''


def process_user(account):
    '''Call /files/list_folder for the given user ID and process any
    changes.'''
    token = redis_client.hget('tokens', account)
    cursor = redis_client.hget('cursors', account)
    dbx = Dropbox(token)
    has_more = True
    while has_more:
        if cursor is None:
            result = dbx.files_list_folder(path='')
        else:
            result = dbx.files_list_folder_continue(cursor)
        for entry in result.entries:
            if (isinstance(entry, DeletedMetadata) or
                    isinstance(entry, FolderMetadata) or
                    not entry.path_lower.endswith('.md')):
                continue
            _, resp = dbx.files_download(entry.path_lower)
            html = markdown(resp.content.decode('utf-8'))
            dbx.files_upload(html.encode('utf-8'),
                             entry.path_lower[:-3] + '.html',
                             mode=WriteMode('overwrite'))
        cursor = result.cursor
        redis_client.hset('cursors', account, cursor)
        has_more = result.has_more


if __name__ == '__main__':
    logging.getLogger('werkzeug').setLevel(logging.ERROR)
    app.run(host='127.0.0.1', port=int(sys.argv[1]), threaded=True)
