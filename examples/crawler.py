"""A gevent web crawler that stores every page it fetches in HBase.

From the repository root::

    .venv/bin/python examples/crawler.py http://127.0.0.1:8000/ \\
        --hbase 'hbase://localhost:9090/?size=8' --concurrency 20 --max-pages 1000

A ``gevent.pool.Pool`` of fetchers takes URLs from a queue, downloads them,
and writes each page to the ``pages`` table (row key: the URL; columns
``p:body``, ``p:status``, ``p:type``) through a green_happybase pool. Only
links to the start URL's host are followed, each URL once. The fetchers
outnumber the pool's connections: each holds one only while it writes.

The pool needs no monkey-patching; urllib does, to fetch concurrently.
"""
# Patching comes first, before anything imports ssl (thriftpy2 does), so
# every import below it is deliberately late:
# ruff: noqa: E402
from gevent import monkey

monkey.patch_all()

import argparse
import logging
import os
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

from gevent.pool import Pool
from gevent.queue import JoinableQueue

import green_happybase
from green_happybase.config import ENV_URL

TABLE = "pages"
log = logging.getLogger("crawler")


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)


def links_in(page_url: str, html: str) -> list[str]:
    """Absolute URLs, without fragments, of the ``<a href>`` links in *html*."""
    parser = _LinkParser()
    parser.feed(html)
    return [urldefrag(urljoin(page_url, link))[0] for link in parser.links]


class Crawler:
    """Fetches a site from *start_url* and stores its pages through *pool*."""

    def __init__(self, pool: green_happybase.ConnectionPool, start_url: str,
                 concurrency: int, max_pages: int, timeout: float) -> None:
        self.pool = pool
        self.start_url = start_url
        self.site = urlsplit(start_url)[:2]  # scheme and host:port
        self.concurrency = concurrency
        self.max_pages = max_pages
        self.timeout = timeout
        self.queue: JoinableQueue[str] = JoinableQueue()
        self.seen: set[str] = set()
        self.stored = 0
        self.broken = 0  # links answered with an HTTP error
        self.errors = 0  # pages that could not be fetched or stored

    def _enqueue(self, url: str) -> None:
        # Only greenlets touch `seen`, and they do not switch in here.
        if url in self.seen or urlsplit(url)[:2] != self.site:
            return
        if len(self.seen) >= self.max_pages:
            return
        self.seen.add(url)
        self.queue.put(url)

    def _fetcher(self) -> None:
        while True:
            url = self.queue.get()
            try:
                self._visit(url)
            except Exception:
                self.errors += 1
                log.exception("cannot crawl %s", url)
            finally:
                self.queue.task_done()

    def _visit(self, url: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = response.read()
                status = response.status
                content_type = response.headers.get_content_type()
                charset = response.headers.get_content_charset() or "utf-8"
        except urllib.error.HTTPError as error:
            self.broken += 1
            log.warning("%s: HTTP %d", url, error.code)
            return
        with self.pool.table(TABLE) as table:
            table.put(url.encode("utf-8"), {
                b"p:body": body,
                b"p:status": b"%d" % status,
                b"p:type": content_type.encode("ascii", "replace"),
            })
        self.stored += 1
        if content_type == "text/html":
            for link in links_in(url, body.decode(charset, "replace")):
                self._enqueue(link)

    def run(self) -> None:
        """Crawl until no URL is left, then stop the fetchers."""
        with self.pool.connection() as conn:
            if TABLE.encode() not in conn.tables():
                conn.create_table(TABLE, {"p": {"max_versions": 1}})
        fetchers = Pool(self.concurrency)
        for _ in range(self.concurrency):
            fetchers.spawn(self._fetcher)
        self._enqueue(self.start_url)
        try:
            self.queue.join()
        finally:
            fetchers.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("start_url", help="where to start, e.g. http://127.0.0.1:8000/")
    parser.add_argument("--hbase", default=os.environ.get(ENV_URL),
                        help="hbase:// URL of the pool (default: $%s)"
                        % ENV_URL)
    parser.add_argument("--concurrency", type=int, default=20, help="fetchers (default 20)")
    parser.add_argument("--max-pages", type=int, default=1000,
                        help="stop discovering after this many URLs (default 1000)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds per fetch (default 10)")
    args = parser.parse_args(argv)
    if not args.hbase:
        parser.error("give --hbase hbase://HOST:PORT/?size=N or set %s"
                     % ENV_URL)
    if args.concurrency < 1 or args.max_pages < 1:
        parser.error("--concurrency and --max-pages must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with green_happybase.ConnectionPool.from_url(args.hbase, name="crawler") as pool:
        crawler = Crawler(pool, args.start_url, args.concurrency, args.max_pages, args.timeout)
        crawler.run()
        stats = pool.stats()
    print("crawled %d URLs: %d pages stored, %d broken links, %d errors; "
          "%d leases on %d connections at most"
          % (len(crawler.seen), crawler.stored, crawler.broken, crawler.errors,
             stats["acquired_total"], stats["size"]))
    return 0 if crawler.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
