"""``restore.py --serve``: a local web page where a person drops photos, watches them being restored, compares
before and after with a slider and downloads the result.

Python's own threaded HTTP server and one static page (``page.html``): no web framework to install or keep
up to date for one upload route and a status route, and nothing that listens beyond 127.0.0.1 unless asked.
Uploads arrive as the raw bytes of one file each; they and their results live in one temporary folder,
removed when the server stops, and at most ``--max_photos`` are kept. A bad upload (not a photo, too large,
a decompression bomb, truncated) is answered with a sentence that the page shows; the server goes on.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import numpy as np
from PIL import Image

from utils.core.errors import UserError, fail, one_line
from utils.infer.restore import Model, restore_rgb
from utils.photo.api import photo_models, photo_options, unchanged_note
from utils.photo.files import FORMATS, SUFFIXES, encode_photo, read_photo, restored_path
from utils.photo.settings import PageSettings, PhotoSettings

PAGE = Path(__file__).with_name("page.html")
PREVIEW_SIDE = 1600  # the slider's pictures: long side in pixels
REQUEST_TIMEOUT = 60  # seconds a client may take to send a request


class _Stopped(Exception):
    """The server is stopping: the photo being restored is left unfinished."""


@dataclass
class Entry:
    """One uploaded photo: its name, where its files are, how far its restoration is."""

    name: str
    folder: Path
    state: str = "waiting"  # waiting, working, done, failed
    progress: float = 0.0
    error: str = ""
    format: str = "JPEG"  # Pillow's name of the result's format
    note: str = ""  # why the result is the photo as it was, where that is so

    def status(self) -> dict:
        return {"name": self.name, "state": self.state, "progress": round(self.progress, 3), "error": self.error,
                "note": self.note}  # fmt: skip


class Gallery:
    """The uploads, restored one at a time by a worker thread, in a temporary folder that ``close`` removes."""

    def __init__(self, models: list[Model], settings: PhotoSettings, page: PageSettings) -> None:
        self.models, self.settings, self.page = models, settings, page
        self.root = Path(tempfile.mkdtemp(prefix="hinet-restore-"))
        self.entries: dict[str, Entry] = {}
        self.lock, self.wake, self.stopped = threading.Lock(), threading.Semaphore(0), threading.Event()
        self.reading = threading.BoundedSemaphore(2)
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    def add(self, name: str, data: bytes) -> str:
        """Check an upload and queue it; refused with a sentence (a UserError) if it cannot be restored."""
        if not self.reading.acquire(timeout=REQUEST_TIMEOUT):  # uploads are decoded two at a time: memory is bounded
            fail("the page is busy reading other uploads; try again in a minute.")
        try:
            photo = read_photo(data, name, min(self.settings.max_megapixels, 50.0))
        finally:
            self.reading.release()
        with self.lock:
            if sum(e.state in ("waiting", "working") for e in self.entries.values()) >= self.page.max_photos:
                fail(f"{self.page.max_photos} photos are already waiting; try again when they are done.")
            key = uuid.uuid4().hex
            entry = Entry(name, self.root / key, format="PNG" if photo.format == "BMP" else photo.format)
            entry.folder.mkdir()
            (entry.folder / "upload").write_bytes(data)
            _preview(photo.rgb, entry.folder / "before.jpg")
            self.entries[key] = entry
            self._forget_oldest()
        self.wake.release()
        return key

    def _forget_oldest(self) -> None:
        """Keep at most ``max_photos``: the oldest finished ones go, files and all."""
        finished = [k for k, e in self.entries.items() if e.state in ("done", "failed")]
        for key in finished[: max(0, len(self.entries) - self.page.max_photos)]:
            shutil.rmtree(self.entries.pop(key).folder, ignore_errors=True)

    def get(self, key: str) -> Entry | None:
        with self.lock:
            return self.entries.get(key)

    def _work(self) -> None:
        while not self.stopped.is_set():
            if not self.wake.acquire(timeout=0.5):
                continue
            with self.lock:
                entry = next((e for e in self.entries.values() if e.state == "waiting"), None)
            if entry is not None:
                self._restore(entry)

    def _restore(self, entry: Entry) -> None:
        entry.state = "working"
        try:
            # Decoded again rather than kept from ``add``: a queue of decoded photos would hold 36 MB per 12-MP
            # upload for as long as it waits; decoding costs about 0.3 s of the 14 s a restoration takes.
            photo = read_photo((entry.folder / "upload").read_bytes(), entry.name, self.settings.max_megapixels)
            opts = photo_options(self.settings)

            def share(done: float) -> None:
                if self.stopped.is_set():
                    raise _Stopped
                entry.progress = 0.9 * done

            rgb = restore_rgb(photo.rgb, self.models, opts, entry.name, on_progress=share)
            (entry.folder / "result").write_bytes(encode_photo(rgb, photo, self.settings.quality))
            _preview(rgb, entry.folder / "after.jpg")
            entry.note = unchanged_note(photo.rgb, self.settings)
            entry.progress, entry.state = 1.0, "done"
        except UserError as err:
            entry.error, entry.state = str(err), "failed"
        except _Stopped:
            entry.error, entry.state = "the page was stopped before this photo was restored.", "failed"
        except Exception as err:  # a bug or an exhausted machine: the page says so, the server goes on
            entry.error, entry.state = f"restoring {entry.name} failed ({one_line(err)}).", "failed"
            print(f"error: {entry.error}", file=sys.stderr)

    def close(self) -> None:
        self.stopped.set()
        try:
            self.worker.join(timeout=60)  # a photo being restored stops at its next batch of tiles
        finally:  # even when a second Ctrl-C interrupts the wait
            shutil.rmtree(self.root, ignore_errors=True)


def _preview(rgb: np.ndarray, path: Path) -> None:
    image = Image.fromarray(rgb)
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    image.save(path, quality=90)


class Handler(BaseHTTPRequestHandler):
    """The page, the upload route and the routes of one photo: status, before, after, download."""

    gallery: Gallery  # set on the subclass that ``serve`` makes
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path in ("/", "/index.html"):
            return self._send(PAGE.read_bytes(), "text/html; charset=utf-8")
        parts = self.path.strip("/").split("/")
        entry = self.gallery.get(parts[2]) if len(parts) >= 3 and parts[:2] == ["api", "photos"] else None
        if entry is None:
            return self._json({"error": "no such page or photo"}, HTTPStatus.NOT_FOUND)
        what = parts[3] if len(parts) == 4 else "status"
        if what == "status" and len(parts) == 3:
            return self._json(entry.status())
        files = {"before.jpg": "before.jpg", "after.jpg": "after.jpg", "download": "result"}
        path = entry.folder / files.get(what, "-")
        if not path.is_file():
            return self._json({"error": "not ready"}, HTTPStatus.NOT_FOUND)
        if what != "download":
            return self._send(path.read_bytes(), "image/jpeg")
        name = restored_path(Path(entry.name)).name
        if Path(name).suffix.lower() not in SUFFIXES or SUFFIXES[Path(name).suffix.lower()] != entry.format:
            name += FORMATS[entry.format][0]  # a name without a suffix, or with another format's
        disposition = f"attachment; filename*=UTF-8''{quote(name)}"
        return self._send(path.read_bytes(), "application/octet-stream", {"Content-Disposition": disposition})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/api/photos":
            return self._json({"error": "no such route"}, HTTPStatus.NOT_FOUND)
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != self.headers.get("Host"):
            self.close_connection = True  # another web site's page, posting to this one from the user's browser
            return self._json({"error": "uploads come from this page only."}, HTTPStatus.FORBIDDEN)
        given = (self.headers.get("Content-Length") or "").strip()
        length = int(given) if given.isascii() and given.isdigit() else -1
        limit = self.gallery.page.max_upload_mb * 1e6
        if length < 0 or length > limit:
            self.close_connection = True
            if 0 < length <= 4 * limit:  # read what was sent, so that the browser hears the answer, not a reset
                self._body(length)
            problem = "has no valid Content-Length" if length < 0 else f"is {length / 1e6:.1f} MB, more than the {limit / 1e6:g} MB allowed"  # fmt: skip
            return self._json({"error": f"the upload {problem}."}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        name = Path(unquote(self.headers.get("X-File-Name") or "photo")).name[:200] or "photo"
        data = self._body(length)
        if data is None:
            self.close_connection = True
            return self._json(
                {"error": f"the upload took longer than {REQUEST_TIMEOUT} s."}, HTTPStatus.REQUEST_TIMEOUT
            )
        try:
            key = self.gallery.add(name, data)
        except UserError as err:
            return self._json({"error": str(err)}, HTTPStatus.BAD_REQUEST)
        # a file that Pillow fails on in a way of its own: the page says so, the server goes on
        except Exception as err:
            print(f"error: the upload {name} failed ({one_line(err)}).", file=sys.stderr)
            return self._json({"error": f"{name} cannot be read ({one_line(err)})."}, HTTPStatus.BAD_REQUEST)
        return self._json({"id": key, "name": name}, HTTPStatus.ACCEPTED)

    def _body(self, length: int) -> bytes | None:
        """The request's ``length`` bytes, or None if they do not arrive within ``REQUEST_TIMEOUT`` s in all (each
        read waits at most as long: a client sending a byte now and then cannot hold a thread for ever)."""
        deadline, parts, left = time.monotonic() + REQUEST_TIMEOUT, [], length
        while left > 0:
            if time.monotonic() > deadline:
                return None
            part = self.rfile.read1(min(left, 1 << 20))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def _json(self, body: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(body).encode(), "application/json", status=status)

    def _send(self, body: bytes, kind: str, headers: dict | None = None, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": kind, "Content-Length": str(len(body)), "Cache-Control": "no-store",
                           **(headers or {})}.items():  # fmt: skip
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # the page polls often: no line per request
        pass


def start_server(settings: PhotoSettings, page: PageSettings) -> tuple[ThreadingHTTPServer, Gallery]:
    """The server, bound and ready (``serve_forever`` not yet called), and its gallery."""
    if not page.host.strip():
        fail(
            "--host is empty, which would listen on every address of this machine; leave it out (127.0.0.1) or "
            "give the address to listen on."
        )
    models = photo_models(settings)
    try:
        family = socket.AF_INET6 if ":" in page.host else socket.AF_INET  # ::1 and other IPv6 addresses too
        server = type("PageServer", (ThreadingHTTPServer,), {"address_family": family})(
            (page.host, page.port), type("PageHandler", (Handler,), {})
        )
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            fail(f"port {page.port} is in use on {page.host}; pass another --port (0 picks a free one).")
        fail(f"cannot listen on {page.host} port {page.port} ({err.strerror or one_line(err)}); check --host and --port.")  # fmt: skip
    server.daemon_threads = True
    server.RequestHandlerClass.gallery = Gallery(models, settings, page)
    return server, server.RequestHandlerClass.gallery


def serve(settings: PhotoSettings, page: PageSettings) -> int:
    """Serve the page until Ctrl-C (or SIGTERM); the uploads are removed either way."""
    server, gallery = start_server(settings, page)
    host, port = server.server_address[:2]
    if page.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: the page listens on {page.host}: anyone who can reach this machine can upload photos.")
    shown = f"[{host}]" if ":" in str(host) else host  # an IPv6 address goes in brackets in a URL
    print(f"open http://{shown}:{port}/ in a browser; Ctrl-C stops", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr, flush=True)
    finally:
        server.server_close()
        gallery.close()
    print("stopped; the uploaded photos were removed", file=sys.stderr)
    return 0
