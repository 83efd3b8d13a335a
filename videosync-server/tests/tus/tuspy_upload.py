"""Uploads a file to videosync with tuspy, the tus project's Python client,
unchanged: part of it in sha1-checksummed chunks, then the connection is cut
in the middle of a PATCH (a raw socket sends half the bytes it announced and
closes), then a fresh tuspy uploader resumes from the upload's URL.

    tuspy_upload.py BASE_URL TOKEN CHANNEL FILE

Prints the upload's URL on the last line.
"""

import http.client
import socket
import sys
import urllib.parse

from tusclient import client

CHUNK = 256 * 1024


def head_offset(base, token, url):
    parts = urllib.parse.urlsplit(urllib.parse.urljoin(base, url))
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("HEAD", parts.path, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    assert response.status == 200, response.status
    return int(response.getheader("Upload-Offset"))


def cut_patch(base, token, url, data, offset):
    """A PATCH that announces the rest of the file, sends half of a chunk
    and drops the connection."""
    parts = urllib.parse.urlsplit(urllib.parse.urljoin(base, url))
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    rest = len(data) - offset
    head = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Tus-Resumable: 1.0.0\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {rest}\r\n\r\n"
    )
    sock.sendall(head.encode() + data[offset:offset + CHUNK // 2])
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def main():
    base, token, channel, path = sys.argv[1:5]
    with open(path, "rb") as f:
        data = f.read()
    tus = client.TusClient(base + "/api/v1/uploads", headers={"Authorization": f"Bearer {token}"})
    metadata = {"channel": channel, "title": "Uploaded by tuspy", "filename": "clip.mp4"}
    first = tus.uploader(path, chunk_size=CHUNK, metadata=metadata, upload_checksum=True)
    first.upload_chunk()
    first.upload_chunk()
    url = first.url
    assert first.offset == 2 * CHUNK, first.offset
    cut_patch(base, token, url, data, first.offset)
    # The server keeps what arrived before the cut; the client asks.
    for _ in range(100):
        offset = head_offset(base, token, url)
        if offset >= 2 * CHUNK:
            break
    assert offset >= 2 * CHUNK, offset
    resumed = tus.uploader(path, url=url, chunk_size=CHUNK, retries=5, retry_delay=1)
    resumed.upload()
    assert resumed.offset == len(data), (resumed.offset, len(data))
    print(url)


if __name__ == "__main__":
    main()
