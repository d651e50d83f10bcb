"""The data set every scenario reads, created through the public API (one
server directly, 8 clients at once): users, follows, articles with tags,
favorites and comments. What wrk needs to make its requests (tokens, slugs,
logins) is written to the data directory scenario.lua reads.

The random source has a fixed seed, so every server seeded with the same
`SeedSize` and run tag holds the same data (its own ids and tokens aside)."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .common import log
from .database import database_deadlocks

WORDS = (
    "wasm component host tokio postgres query latency replica nginx pool cache statement "
    "runtime instance memory throughput request response article author tag follow favorite "
    "comment feed profile token argon2 hash index plan schema migration deploy cluster"
).split()

# The same data set in every run (only the user names' run tag differs).
SEED = 20240611
# Each user follows up to this many others when the size does not say how
# many follows there are.
FOLLOWS_PER_USER = 8


@dataclass(frozen=True)
class SeedSize:
    """How much data: users and articles, and optionally exact numbers of
    follows, favorites and comments (else up to 8 follows per user, three
    favorite draws and two comments per article)."""

    users: int
    articles: int
    follows: int | None = None
    favorites: int | None = None
    comments: int | None = None


class ApiClient:
    """Keep-alive JSON client, one connection per thread."""

    def __init__(self, base_url: str):
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname, parsed.port
        self.local = threading.local()

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        payload = json.dumps(body) if body is not None else None
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                text = response.read()
                return response.status, (json.loads(text) if text else {})
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")


def expect(status: int, body: dict, allowed: tuple[int, ...], what: str) -> dict:
    if status not in allowed:
        raise RuntimeError(f"seeding {what}: HTTP {status} {body}")
    return body


class Seeder:
    """One seeding: the client, the thread pool and the random source the
    steps share, in the order they draw from it."""

    def __init__(self, api_url: str, database_url: str):
        self.client = ApiClient(api_url)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        self.rng = random.Random(SEED)
        self.database_url = database_url

    def sentence(self, words: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(words)).capitalize()

    def users(self, count: int, run_tag: str) -> tuple[list[dict], list[str]]:
        """Registers `count` users named after `run_tag`: (their accounts,
        their tokens)."""
        accounts = [
            {
                "username": f"user{run_tag}x{i}",
                "email": f"user{run_tag}x{i}@bench.example",
                "password": f"password-{i}-{self.rng.randrange(10**6)}",
            }
            for i in range(count)
        ]

        def register(account: dict) -> str:
            status, body = self.client.call("POST", "/api/users", {"user": account})
            return expect(status, body, (200, 201), "user")["user"]["token"]

        tokens = list(self.pool.map(register, accounts))
        log(f"seeded {count} users")
        return accounts, tokens

    def follow_pairs(self, users: int, count: int | None) -> set[tuple[int, int]]:
        """(follower, followee) pairs: `count` distinct ones, or every user
        following up to FOLLOWS_PER_USER others."""
        pairs = set()
        if count is None:
            for follower in range(users):
                for followee in self.rng.sample(range(users), FOLLOWS_PER_USER):
                    if followee != follower:
                        pairs.add((follower, followee))
            return pairs
        count = min(count, users * (users - 1))
        while len(pairs) < count:
            follower, followee = self.rng.randrange(users), self.rng.randrange(users)
            if followee != follower:
                pairs.add((follower, followee))
        return pairs

    def follows(self, accounts: list[dict], tokens: list[str], count: int | None) -> int:
        pairs = self.follow_pairs(len(accounts), count)

        def follow(pair: tuple[int, int]) -> None:
            follower, followee = pair
            status, body = self.client.call(
                "POST", f"/api/profiles/{accounts[followee]['username']}/follow", token=tokens[follower]
            )
            expect(status, body, (200,), "follow")

        list(self.pool.map(follow, sorted(pairs)))
        log(f"seeded {len(pairs)} follows")
        return len(pairs)

    def articles(self, tokens: list[str], count: int, tag_names: list[str]) -> tuple[list[str], int, int]:
        """`count` articles with 1-4 of the tags each, written in turn by
        every user: (their slugs, creates retried after a 500, deadlocks)."""
        specs = []
        for i in range(count):
            specs.append(
                (
                    i % len(tokens),
                    {
                        "title": f"{self.sentence(5)} {i}",
                        "description": self.sentence(12),
                        "body": "\n\n".join(self.sentence(self.rng.randint(40, 90)) + "."
                                            for _ in range(self.rng.randint(2, 6))),
                        "tagList": self.rng.sample(tag_names, self.rng.randint(1, 4)),
                    },
                )
            )
        retried = []

        def create(spec: tuple[int, dict]) -> str:
            author, article = spec
            # Concurrent creates with overlapping tags in different orders can
            # deadlock in the tag upsert (a 500); a client would retry, and the
            # report counts how often that happened.
            for _ in range(5):
                status, body = self.client.call("POST", "/api/articles", {"article": article}, token=tokens[author])
                if status != 500:
                    break
                retried.append(article["title"])
            return expect(status, body, (200, 201), "article")["article"]["slug"]

        deadlocks_before = database_deadlocks(self.database_url)
        slugs = list(self.pool.map(create, specs))
        deadlocks = database_deadlocks(self.database_url) - deadlocks_before
        log(f"seeded {len(slugs)} articles ({len(retried)} creates answered 500 and were retried; "
            f"{deadlocks} deadlocks in pg_stat_database meanwhile)")
        return slugs, len(retried), deadlocks

    def favorite_pairs(self, users: int, articles: int, draws: int, count: int | None) -> set[tuple[int, int]]:
        """(user, article) pairs: `count` distinct ones, or `draws` draws
        with the duplicates dropped."""
        if count is None:
            return {(self.rng.randrange(users), self.rng.randrange(articles)) for _ in range(draws)}
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < min(count, users * articles):
            pairs.add((self.rng.randrange(users), self.rng.randrange(articles)))
        return pairs

    def favorites(self, tokens: list[str], slugs: list[str], draws: int, count: int | None) -> int:
        pairs = self.favorite_pairs(len(tokens), len(slugs), draws, count)

        def favorite(pair: tuple[int, int]) -> None:
            user, article = pair
            status, body = self.client.call("POST", f"/api/articles/{slugs[article]}/favorite", token=tokens[user])
            expect(status, body, (200,), "favorite")

        list(self.pool.map(favorite, sorted(pairs)))
        log(f"seeded {len(pairs)} favorites")
        return len(pairs)

    def comments(self, tokens: list[str], slugs: list[str], count: int) -> int:
        specs = [(self.rng.randrange(len(tokens)), self.rng.randrange(len(slugs)), self.sentence(self.rng.randint(8, 30)))
                 for _ in range(count)]

        def comment(spec: tuple[int, int, str]) -> None:
            user, article, text = spec
            status, body = self.client.call(
                "POST", f"/api/articles/{slugs[article]}/comments", {"comment": {"body": text}}, token=tokens[user]
            )
            expect(status, body, (200, 201), "comment")

        list(self.pool.map(comment, specs))
        log(f"seeded {len(specs)} comments")
        return len(specs)


def seed(api_url: str, database_url: str, data_dir: Path, size: SeedSize, run_tag: str | None = None) -> dict:
    """Creates the data set through the public API; writes the files wrk
    reads. `run_tag` names the users (default: from the clock, so that a
    second seeding of the same database does not collide)."""
    started = time.monotonic()
    seeder = Seeder(api_url, database_url)
    accounts, tokens = seeder.users(size.users, run_tag or f"{int(time.time()) % 100000}")
    follows = seeder.follows(accounts, tokens, size.follows)
    tag_names = seeder.rng.sample(WORDS, 30)
    slugs, retried, deadlocks = seeder.articles(tokens, size.articles, tag_names)
    favorites = seeder.favorites(tokens, slugs, size.articles * 3, size.favorites)
    comments = seeder.comments(tokens, slugs, size.comments if size.comments is not None else size.articles * 2)
    seeder.pool.shutdown()

    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (data_dir / "slugs.txt").write_text("\n".join(slugs) + "\n")
    (data_dir / "logins.txt").write_text("\n".join(f"{a['email']}\t{a['password']}" for a in accounts) + "\n")
    return {
        "users": size.users,
        "follows": follows,
        "articles": len(slugs),
        "tags": len(tag_names),
        "favorites": favorites,
        "comments": comments,
        "article_creates_retried_after_500": retried,
        "deadlocks_during_article_creates": deadlocks,
        "seconds": round(time.monotonic() - started, 1),
    }
