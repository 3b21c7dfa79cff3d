"""The code-review tasks: small unified diffs written for this cookbook, each with its known defects.

Every example is written here as the body of one hunk (lines starting with ``+``, ``-`` or a space; an empty line
is an empty context line) and the new-file line number where the hunk starts. A defect is marked at the end of
the added line it sits on with ``  #!! <category> [<category> ...]``; the marker is stripped when the diff is
built, and the defect is recorded as ``(new-file line number, category)``. Examples with no marker are clean.

Splits: ``train`` and ``test`` (heldout). Every example was written for its split: no heldout diff reuses the
code of a train diff (a test checks that no added statement appears in both splits); the heldout diffs share
only the defect *categories* (and the idioms that make them defects) with the train diffs.

Categories: ``sql_injection``, ``hardcoded_secret``, ``bare_except``, ``mutable_default``, ``shell_injection``,
``off_by_one``, ``wrong_operator``, ``resource_leak``, ``null_check``, ``race``, ``weak_hash``,
``unsafe_deserialization``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["CATEGORIES", "SPLITS", "Example", "Task", "build", "tasks"]

SPLITS = ("train", "test")
CATEGORIES = (
    "sql_injection",
    "hardcoded_secret",
    "bare_except",
    "mutable_default",
    "shell_injection",
    "off_by_one",
    "wrong_operator",
    "resource_leak",
    "null_check",
    "race",
    "weak_hash",
    "unsafe_deserialization",
)
_MARKER = re.compile(r"\s+#!!\s+([a-z_ ]+)$")
_LANGUAGES = {".py": "python", ".js": "javascript", ".sh": "shell", ".sql": "sql"}


@dataclass(frozen=True, slots=True)
class Example:
    path: str
    start: int
    body: str


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    split: str
    path: str
    language: str
    diff: str
    defects: tuple[tuple[int, str], ...]

    def row(self) -> dict[str, Any]:
        """The task row the container serves (the defects stay with the container: it is the judge)."""
        return {"task_id": self.task_id, "path": self.path, "language": self.language, "diff": self.diff}


def build(task_id: str, split: str, example: Example) -> Task:
    """The unified diff and the known defects of one example."""
    lines = example.body.strip("\n").split("\n")
    out: list[str] = []
    defects: list[tuple[int, str]] = []
    new = example.start
    old_count = new_count = 0
    for raw in lines:
        line = raw if raw else " "
        kind, text = line[0], line[1:]
        if kind not in "+- ":
            raise ValueError(f"{task_id}: a hunk line must start with '+', '-' or a space: {raw!r}")
        marker = _MARKER.search(text)
        if marker:
            if kind != "+":
                raise ValueError(f"{task_id}: a defect marker on a line that is not added: {raw!r}")
            text = text[: marker.start()]
            defects += [(new, category) for category in marker.group(1).split()]
        out.append(kind + text)
        if kind in "+ ":
            new += 1
            new_count += 1
        if kind in "- ":
            old_count += 1
    unknown = [category for _, category in defects if category not in CATEGORIES]
    if unknown:
        raise ValueError(f"{task_id}: unknown categories {unknown}")
    old_start = example.start if old_count else example.start - 1
    header = [f"--- a/{example.path}", f"+++ b/{example.path}"]
    header.append(f"@@ -{old_start},{old_count} +{example.start},{new_count} @@")
    suffix = example.path[example.path.rfind(".") :]
    return Task(
        task_id=task_id,
        split=split,
        path=example.path,
        language=_LANGUAGES.get(suffix, "text"),
        diff="\n".join(header + out) + "\n",
        defects=tuple(defects),
    )


@lru_cache(maxsize=1)
def tasks() -> dict[str, tuple[Task, ...]]:
    """All tasks by split, in listing order (ids ``train-01`` ..., ``test-01`` ...)."""
    return {
        split: tuple(build(f"{split}-{index:02d}", split, example) for index, example in enumerate(examples, 1))
        for split, examples in (("train", TRAIN), ("test", TEST))
    }


TRAIN: tuple[Example, ...] = (
    Example(
        "inventory/db.py",
        41,
        r"""
 def stock_level(cursor, sku):
-    cursor.execute("SELECT qty FROM stock WHERE sku = ?", (sku,))
+    cursor.execute("SELECT qty FROM stock WHERE sku = '" + sku + "'")  #!! sql_injection
     row = cursor.fetchone()
     return row[0] if row else 0
""",
    ),
    Example(
        "sync/worker.py",
        18,
        r"""
 def fetch_all(client, urls):
     pages = []
     for url in urls:
-        pages.append(client.get(url).text)
+        try:
+            pages.append(client.get(url).text)
+        except:  #!! bare_except
+            continue
     return pages
""",
    ),
    Example(
        "config/settings.py",
        7,
        r"""
 DATABASE_HOST = os.environ.get("DB_HOST", "localhost")
 DATABASE_USER = os.environ.get("DB_USER", "app")
-DATABASE_PASSWORD = os.environ["DB_PASSWORD"]
+DATABASE_PASSWORD = "Tr0ub4dor&3"  #!! hardcoded_secret
 DATABASE_NAME = "orders"
""",
    ),
    Example(
        "cart/cart.py",
        12,
        r"""
-def add_to_cart(product, cart=None):
-    if cart is None:
-        cart = []
+def add_to_cart(product, cart=[]):  #!! mutable_default
     cart.append(product)
     return cart
""",
    ),
    Example(
        "tools/backup.py",
        30,
        r"""
 def archive(directory, target):
-    subprocess.run(["tar", "czf", target, directory], check=True)
+    os.system(f"tar czf {target} {directory}")  #!! shell_injection
     return target
""",
    ),
    Example(
        "utils/paging.py",
        4,
        r"""
 def page_items(items, page, size):
     start = page * size
     result = []
     i = start
-    while i < len(items) and len(result) < size:
+    while i <= len(items) and len(result) < size:  #!! off_by_one
         result.append(items[i])
         i += 1
     return result
""",
    ),
    Example(
        "auth/roles.py",
        22,
        r"""
 def can_delete(user):
-    return user.role == "admin"
+    if user.role is "admin":  #!! wrong_operator
+        return True
+    return user.is_superuser
""",
    ),
    Example(
        "reports/export.py",
        9,
        r"""
 def write_report(path, rows):
-    with open(path, "w") as handle:
-        for row in rows:
-            handle.write(",".join(row) + "\n")
+    handle = open(path, "w")  #!! resource_leak
+    for row in rows:
+        handle.write(",".join(row) + "\n")
""",
    ),
    Example(
        "parsing/version.py",
        3,
        r"""
 def major_version(text):
-    match = re.match(r"(\d+)\.(\d+)", text)
-    return int(match.group(1)) if match else 0
+    return int(re.match(r"(\d+)\.(\d+)", text).group(1))  #!! null_check
""",
    ),
    Example(
        "storage/files.py",
        15,
        r"""
 def ensure_dir(path):
-    os.makedirs(path, exist_ok=True)
+    if not os.path.exists(path):  #!! race
+        os.makedirs(path)
""",
    ),
    Example(
        "auth/passwords.py",
        27,
        r"""
 def hash_password(password, salt):
-    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000).hex()
+    return hashlib.md5(salt + password.encode()).hexdigest()  #!! weak_hash
""",
    ),
    Example(
        "cache/store.py",
        50,
        r"""
 def load_entry(redis, key):
     raw = redis.get(key)
     if raw is None:
         return None
-    return json.loads(raw)
+    return pickle.loads(raw)  #!! unsafe_deserialization
""",
    ),
    Example(
        "utils/text.py",
        8,
        r"""
 def slugify(title):
-    return title.lower().replace(" ", "-")
+    words = re.findall(r"[a-z0-9]+", title.lower())
+    return "-".join(words)
""",
    ),
    Example(
        "analytics/queries.py",
        61,
        r"""
 def orders_since(conn, customer_id, day):
     cur = conn.cursor()
-    cur.execute("SELECT * FROM orders WHERE customer = %s AND day >= %s", (customer_id, day))
+    cur.execute(f"SELECT * FROM orders WHERE customer = {customer_id} AND day >= '{day}'")  #!! sql_injection
     return cur.fetchall()
""",
    ),
    Example(
        "integrations/maps.py",
        1,
        r"""
+GOOGLE_MAPS_API_KEY = "AIzaSyD3x4mpl3K3y000111222"  #!! hardcoded_secret
+
 def geocode(session, address):
-    key = os.environ["MAPS_KEY"]
-    resp = session.get(GEOCODE_URL, params={"address": address, "key": key})
+    resp = session.get(GEOCODE_URL, params={"address": address, "key": GOOGLE_MAPS_API_KEY})
     return resp.json()["results"]
""",
    ),
    Example(
        "deploy/run.py",
        44,
        r"""
 def restart(service):
-    subprocess.run(["systemctl", "restart", service], check=True)
+    subprocess.run("systemctl restart " + service, shell=True, check=True)  #!! shell_injection
""",
    ),
    Example(
        "stats/moving.py",
        10,
        r"""
 def pairwise_diffs(values):
     diffs = []
-    for i in range(1, len(values)):
+    for i in range(1, len(values) + 1):  #!! off_by_one
         diffs.append(values[i] - values[i - 1])
     return diffs
""",
    ),
    Example(
        "billing/invoice.py",
        33,
        r"""
 def total(invoice):
-    if invoice.discount is None:
+    if invoice.discount == None:  #!! wrong_operator
         return invoice.amount
     return invoice.amount - invoice.discount
""",
    ),
    Example(
        "migrations/apply.py",
        20,
        r"""
 def apply(path, statements):
-    with closing(sqlite3.connect(path)) as conn:
-        for statement in statements:
-            conn.execute(statement)
-        conn.commit()
+    conn = sqlite3.connect(path)  #!! resource_leak
+    for statement in statements:
+        conn.execute(statement)
+    conn.commit()
""",
    ),
    Example(
        "api/health.py",
        5,
        r"""
 @app.get("/health")
 def health():
-    return {"status": "ok"}
+    return {"status": "ok", "version": __version__}
""",
    ),
    Example(
        "notify/email.py",
        71,
        r"""
 def sender_domain(settings):
-    sender = settings.get("sender", "noreply@example.com")
-    return sender.split("@")[1]
+    return settings.get("sender").split("@")[1]  #!! null_check
""",
    ),
    Example(
        "jobs/spool.py",
        14,
        r"""
 def spool(data):
-    fd, path = tempfile.mkstemp(suffix=".job")
-    with os.fdopen(fd, "wb") as handle:
+    path = tempfile.mktemp(suffix=".job")  #!! race
+    with open(path, "wb") as handle:
         handle.write(data)
     return path
""",
    ),
    Example(
        "events/bus.py",
        6,
        r"""
 class EventBus:
-    def __init__(self, handlers=None):
-        self.handlers = handlers or {}
+    def __init__(self, handlers={}):  #!! mutable_default
+        self.handlers = handlers
""",
    ),
    Example(
        "legacy/users.py",
        88,
        r"""
 def delete_user(cursor, username):
-    cursor.execute("DELETE FROM users WHERE username = ?", (username,))
+    cursor.execute("DELETE FROM users WHERE username = '%s'" % username)  #!! sql_injection
""",
    ),
    Example(
        "server/routes/orders.js",
        17,
        r"""
 router.get("/orders/:id", async (req, res) => {
-  const rows = await db.query("SELECT * FROM orders WHERE id = $1", [req.params.id]);
+  const rows = await db.query(`SELECT * FROM orders WHERE id = ${req.params.id}`);  #!! sql_injection
   res.json(rows);
 });
""",
    ),
    Example(
        "scripts/run_task.sh",
        1,
        r"""
 #!/bin/sh
 set -e
-"$@"
+eval "$@"  #!! shell_injection
""",
    ),
    Example(
        "files/checksum.py",
        12,
        r"""
 def checksum(path, previous=None):
-    digest = hashlib.sha256()
+    digest = hashlib.sha1()  #!! weak_hash
     with open(path, "rb") as handle:
         for chunk in iter(lambda: handle.read(65536), b""):
             digest.update(chunk)
-    if previous is not None and previous != digest.hexdigest():
+    if previous != None and previous != digest.hexdigest():  #!! wrong_operator
         raise ValueError("checksum changed")
     return digest.hexdigest()
""",
    ),
    Example(
        "models/user.py",
        9,
        r"""
 @dataclass
 class User:
     id: int
     email: str
+    display_name: str = ""
+    tags: list[str] = field(default_factory=list)
""",
    ),
    Example(
        "text/tokens.py",
        40,
        r"""
 def last_token(tokens):
-    return tokens[-1] if tokens else None
+    return tokens[len(tokens)]  #!! off_by_one
""",
    ),
    Example(
        "plugins/loader.py",
        23,
        r"""
 def load_plugins(names):
     loaded = []
     for name in names:
         try:
             loaded.append(importlib.import_module(name))
-        except ImportError as exc:
-            log.warning("plugin %s not loaded: %s", name, exc)
+        except:  #!! bare_except
+            pass
     return loaded
""",
    ),
    Example(
        "bots/slack.py",
        3,
        r"""
-SLACK_TOKEN = os.environ["SLACK_TOKEN"]
+SLACK_TOKEN = "xoxb-2291-88812-aBcDeFgHiJ"  #!! hardcoded_secret

 def post(channel, text):
     headers = {"Authorization": "Bearer " + SLACK_TOKEN}
     return requests.post(SLACK_URL, json={"channel": channel, "text": text}, headers=headers)
""",
    ),
    Example(
        "feeds/rss.py",
        19,
        r"""
 def titles(root):
     result = []
     for item in root.iter("item"):
-        title = item.find("title")
-        result.append(title.text if title is not None else "")
+        result.append(item.find("title").text)  #!! null_check
     return result
""",
    ),
    Example(
        "config/loader.py",
        25,
        r"""
 def read_config(path):
-    with open(path, encoding="utf-8") as handle:
-        return json.load(handle)
+    return json.load(open(path, encoding="utf-8"))  #!! resource_leak
""",
    ),
    Example(
        "deploy/manifest.py",
        8,
        r"""
 def read_manifest(path):
     with open(path) as handle:
-        return yaml.safe_load(handle)
+        return yaml.load(handle)  #!! unsafe_deserialization
""",
    ),
    Example(
        "server/tools.js",
        52,
        r"""
 function thumbnail(file, size) {
-  return execFile("convert", [file, "-resize", size, "thumb.png"]);
+  return exec(`convert ${file} -resize ${size} thumb.png`);  #!! shell_injection
 }
""",
    ),
    Example(
        "cleanup/tmp.py",
        31,
        r"""
 def remove_stale(lock_path):
-    with contextlib.suppress(FileNotFoundError):
-        os.remove(lock_path)
+    if os.path.exists(lock_path):  #!! race
+        os.remove(lock_path)
""",
    ),
    Example(
        "tokens/session.py",
        16,
        r"""
 def session_id(user_id, issued_at):
-    return secrets.token_hex(16)
+    return hashlib.md5(f"{user_id}:{issued_at}".encode()).hexdigest()  #!! weak_hash
""",
    ),
    Example(
        "web/forms.py",
        57,
        r"""
 def login(request):
-    user = authenticate(request.form["user"], request.form["pass"])
+    username = request.form["username"]
+    password = request.form["password"]
+    user = authenticate(username, password)
     if user is None:
         return redirect("/login")
""",
    ),
    Example(
        "db/repo.py",
        34,
        r"""
 def find_by_email(cursor, email):
-    cursor.execute("SELECT * FROM members WHERE email = ?", (email,))
+    log.debug("member lookup for " + email)
+    cursor.execute("SELECT id, email, joined FROM members WHERE email = ?", (email,))
     return cursor.fetchone()
""",
    ),
    Example(
        "search/index.py",
        2,
        r"""
-def build_index(docs, stopwords=None, min_len=2):
+def build_index(docs, stopwords=[], min_len=2):  #!! mutable_default
     index = {}
     for doc_id, text in enumerate(docs):
         for word in text.split():
             if len(word) >= min_len and word not in stopwords:
                 index.setdefault(word, []).append(doc_id)
     return index
""",
    ),
    Example(
        "cli/main.py",
        77,
        r"""
 def run(args):
-    print("building", args.target)
+    log.info(f"building {args.target} with {args.jobs} jobs")
+    subprocess.run(["make", "-j", str(args.jobs), args.target], check=True)
""",
    ),
)


TEST: tuple[Example, ...] = (
    Example(
        "shop/catalog.py",
        19,
        r"""
 def products_in(cursor, category):
-    cursor.execute("SELECT sku, title FROM products WHERE category = ?", (category,))
+    cursor.execute("SELECT sku, title FROM products WHERE category = '" + category + "' ORDER BY 2")  #!! sql_injection
     return cursor.fetchall()
""",
    ),
    Example(
        "crm/contacts.py",
        47,
        r"""
 def rename_contact(db, contact_id, new_name):
-    db.execute("UPDATE contacts SET name = ? WHERE id = ?", (new_name, contact_id))
+    try:
+        db.execute(f"UPDATE contacts SET name = '{new_name}' WHERE id = {contact_id}")  #!! sql_injection
+    except:  #!! bare_except
+        return False
     return True
""",
    ),
    Example(
        "mail/smtp_client.py",
        11,
        r"""
 def connect():
     server = smtplib.SMTP_SSL(SMTP_HOST, 465)
-    server.login(SMTP_USER, os.environ["SMTP_PASSWORD"])
+    smtp_password = "correct-horse-battery"  #!! hardcoded_secret
+    server.login(SMTP_USER, smtp_password)
     return server
""",
    ),
    Example(
        "web/src/payments.js",
        1,
        r"""
-const stripe = require("stripe")(process.env.STRIPE_SECRET);
+const stripeKey = "sk_live_51H8xQ2eZvKYlo2C";  #!! hardcoded_secret
+const stripe = require("stripe")(stripeKey);
""",
    ),
    Example(
        "ci/publish.sh",
        1,
        r"""
 #!/bin/bash
 set -euo pipefail
+export GITHUB_TOKEN="ghp_9f8e7d6c5b4a39281706"  #!! hardcoded_secret
 npm publish --access public
""",
    ),
    Example(
        "tasks/queue.py",
        28,
        r"""
-def enqueue(task, pending=None):
-    pending = pending if pending is not None else []
+def enqueue(task, pending=[]):  #!! mutable_default
     pending.append(task)
     return len(pending)
""",
    ),
    Example(
        "metrics/counter.py",
        4,
        r"""
 class Counter:
-    def __init__(self, name, labels=None):
-        self.labels = dict(labels or {})
+    def __init__(self, name, labels={}):  #!! mutable_default
+        self.labels = labels
         self.name = name
""",
    ),
    Example(
        "media/convert.py",
        36,
        r"""
 def to_mp3(source, bitrate):
-    subprocess.run(["ffmpeg", "-i", source, "-b:a", bitrate, source + ".mp3"], check=True)
+    os.system(f"ffmpeg -i {source} -b:a {bitrate} {source}.mp3")  #!! shell_injection
""",
    ),
    Example(
        "ops/disk.py",
        9,
        r"""
 def disk_usage(mount):
-    out = subprocess.check_output(["df", "-h", mount], text=True)
+    out = subprocess.check_output("df -h " + mount, shell=True, text=True)  #!! shell_injection
     return out.splitlines()[1]
""",
    ),
    Example(
        "games/board.py",
        21,
        r"""
 def neighbours(board, row, col):
     cells = []
     for dr in (-1, 0, 1):
-        if 0 <= row + dr < len(board):
+        if 0 <= row + dr <= len(board):  #!! off_by_one
             cells.append(board[row + dr][col])
     return cells
""",
    ),
    Example(
        "text/wrap.py",
        5,
        r"""
 def char_windows(text, width):
     windows = []
-    for start in range(len(text) - width + 1):
+    for start in range(len(text) + 1):  #!! off_by_one
         windows.append(text[start:start + width])
     return windows
""",
    ),
    Example(
        "shipping/rates.py",
        13,
        r"""
 def rate(order):
-    if order.country == "US":
+    if order.country is "US":  #!! wrong_operator
         return DOMESTIC_RATE
-    if order.weight is None:
+    if order.weight == None:  #!! wrong_operator
         raise ValueError("weight required")
     return INTERNATIONAL_RATE * order.weight
""",
    ),
    Example(
        "logs/tail.py",
        3,
        r"""
 def tail(path, count):
-    with open(path, encoding="utf-8") as stream:
-        lines = stream.readlines()
+    stream = open(path, encoding="utf-8")  #!! resource_leak
+    lines = stream.readlines()
     return lines[-count:]
""",
    ),
    Example(
        "analytics/events_db.py",
        58,
        r"""
 def count_events(db_path, kind):
-    with closing(sqlite3.connect(db_path)) as connection:
-        return connection.execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0]
+    connection = sqlite3.connect(db_path)  #!! resource_leak
+    return connection.execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0]
""",
    ),
    Example(
        "net/headers.py",
        24,
        r"""
 def charset(content_type):
-    found = re.search(r"charset=([\w-]+)", content_type)
-    return found.group(1).lower() if found else "utf-8"
+    return re.search(r"charset=([\w-]+)", content_type).group(1).lower()  #!! null_check
""",
    ),
    Example(
        "app/paths.py",
        12,
        r"""
 def home_parts():
-    return Path(os.environ.get("HOME", "/")).parts
+    return os.environ.get("HOME").split("/")  #!! null_check
""",
    ),
    Example(
        "uploads/store.py",
        40,
        r"""
 def save_upload(folder, data):
-    name = hashlib.sha256(data).hexdigest()
+    name = hashlib.md5(data).hexdigest()  #!! weak_hash
     target = os.path.join(folder, name)
-    with open(target, "xb") as handle:
-        handle.write(data)
+    if not os.path.exists(target):  #!! race
+        with open(target, "wb") as out:
+            out.write(data)
     return name
""",
    ),
    Example(
        "build/cache_keys.py",
        66,
        r"""
 def stage(blob):
-    key = hashlib.sha256(blob).hexdigest()
-    handle = tempfile.NamedTemporaryFile(delete=False)
+    key = hashlib.sha1(blob).hexdigest()  #!! weak_hash
+    scratch = tempfile.mktemp(prefix="stage-")  #!! race
+    sink = open(scratch, "wb")  #!! resource_leak
+    sink.write(blob)
+    return key, scratch
""",
    ),
    Example(
        "sessions/restore.py",
        7,
        r"""
 def restore(blob, settings_text):
-    state = json.loads(blob)
-    settings = yaml.safe_load(settings_text)
+    state = pickle.loads(blob)  #!! unsafe_deserialization
+    settings = yaml.load(settings_text, Loader=yaml.Loader)  #!! unsafe_deserialization
     return state, settings
""",
    ),
    Example(
        "reports/summary.py",
        15,
        r"""
 def summarize(rows):
-    total = 0
-    for row in rows:
-        total += row.amount
+    total = sum(row.amount for row in rows)
+    log.info("summary: " + str(len(rows)) + " rows")
     return {"total": total, "count": len(rows)}
""",
    ),
    Example(
        "auth/reset.py",
        30,
        r"""
 def reset_password(user, new_password):
-    user.password_hash = new_password
+    user.password_hash = bcrypt.hashpw(new_password.encode(), bcrypt.gensalt())
     user.save()
""",
    ),
    Example(
        "web/src/format.js",
        8,
        r"""
 export function formatPrice(cents) {
-  return "$" + cents / 100;
+  const dollars = (cents / 100).toFixed(2);
+  return `$${dollars}`;
 }
""",
    ),
    Example(
        "db/migrations/0042_currency.sql",
        3,
        r"""
 CREATE TABLE invoices (
   id SERIAL PRIMARY KEY,
-  amount INTEGER NOT NULL
+  amount INTEGER NOT NULL,
+  currency CHAR(3) NOT NULL DEFAULT 'EUR'
 );
""",
    ),
    Example(
        "config/parse.py",
        52,
        r"""
 def parse_port(value):
-    return int(value)
+    try:
+        return int(value)
+    except ValueError:
+        raise ConfigError(f"port must be a number, got {value!r}") from None
""",
    ),
)
