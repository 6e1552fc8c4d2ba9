"""fake-kube-apiserver: a test double of the Kubernetes API server for tend's tests.

It is NOT a Kubernetes API server. No real kube-apiserver can run on a test machine without a
cluster, so this reproduces, from the Kubernetes documentation, the parts of the API that
clients rely on, and is checked against the real `kubectl` in tests/it/kube_fake.rs:

- TLS with its own CA, a bearer token, and a kubeconfig it writes for both;
- discovery: /version, /api, /apis, /api/v1, /apis/GROUP/VERSION;
- objects with uid, resourceVersion, generation (bumped when anything but metadata and status
  changes) and creationTimestamp; create, get, list (equality label selectors, limit and
  continue), replace, merge patch and delete;
- server-side apply (PATCH application/apply-patch+yaml, `fieldManager`, `force`, `dryRun=All`)
  with managedFields in the FieldsV1 format: a manager owns the fields it applies; fields it
  stops applying and nobody else owns are removed; applying a field another manager set to a
  different value is a 409 Conflict naming the manager and the field unless forced, which takes
  the field over; other writes are `Update` entries that take over the fields they change;
- errors as `Status` objects with the API's reasons (NotFound, AlreadyExists, Conflict, Invalid,
  Unauthorized, BadRequest, MethodNotAllowed, UnsupportedMediaType);
- the defaults that trip naive diffs (Deployment replicas, strategy, revisionHistoryLimit,
  progressDeadlineSeconds; containers' imagePullPolicy and terminationMessage*; Service
  clusterIP, port protocol and targetPort; ...), the immutable fields it refuses with 422
  (workload selectors, a Service's clusterIP, a Job's template, StatefulSet fields, immutable
  ConfigMaps and Secrets), and some of its validation (a workload whose selector does not
  select its template, or without containers: 422 with the field in `causes`);
- watches from a resourceVersion (or of everything, as ADDED) with label and field selectors;
- CustomResourceDefinitions: Established within moments, their kinds served (discovery, CRUD,
  apply) from then on and gone with them;
- deletion with finalizers (the object stays, with a deletionTimestamp, until an update removes
  the last one) and propagation to what an object owns (ownerReferences; `Orphan` keeps them);
- JSON bodies only: a protobuf body (what `kubectl create configmap` and other generators send)
  gets 415, as from a server that does not speak protobuf;
- OpenAPI v3 documents without schemas, whose write operations take `fieldValidation`: clients
  then leave field validation to the server, which refuses unknown top-level fields under
  `fieldValidation=Strict` (a real server checks every level against the schema);
- simulated controllers that set status over time (FAKE_KUBE_READY_SECONDS, default 1):
  Deployments, StatefulSets and DaemonSets become ready, an image whose name contains
  `never-ready` never does and its Deployment fails with ProgressDeadlineExceeded, Jobs complete
  (or fail when the image contains `fails`), PVCs are Bound, LoadBalancer Services get an
  address;
- the test's controls, with the token: POST /fake/faults `{"code": 429, "match": "GET /api/v1",
  "times": 2, "retry_after": 1}` fails the next matching requests (`match`: a substring of
  `VERB /path`), POST /fake/latency `{"seconds": 0.05}` delays every request, GET /fake/calls
  counts requests by `VERB /path`, GET /fake/concurrency gives the most requests of each verb
  served at once.

    python3 fake_kube_apiserver.py WORK_DIR [--listen ADDRESS:PORT] [--ca DIR] [--token TOKEN]

writes WORK_DIR/kubeconfig (and the certificates) and prints `ready PORT` once it serves on
127.0.0.1 (or ADDRESS:PORT: a VM's address inside its network namespace). `--ca DIR` signs the
server's certificate with DIR/ca.crt and DIR/ca.key instead of a CA of its own (a client that
knows the CA beforehand); `--token` fixes the bearer token. Stop it with SIGTERM.
"""
import copy
import datetime
import http.server
import json
import os
import re
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import base64

TOKEN = "fake-kube-token-" + uuid.uuid4().hex

# group, version, kind, plural, namespaced
RESOURCES = [
    ("", "v1", "Namespace", "namespaces", False),
    ("", "v1", "ConfigMap", "configmaps", True),
    ("", "v1", "Secret", "secrets", True),
    ("", "v1", "Service", "services", True),
    ("", "v1", "ServiceAccount", "serviceaccounts", True),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    ("apps", "v1", "Deployment", "deployments", True),
    ("apps", "v1", "StatefulSet", "statefulsets", True),
    ("apps", "v1", "DaemonSet", "daemonsets", True),
    ("batch", "v1", "Job", "jobs", True),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", True),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False),
]
SHORT_NAMES = {"namespaces": ["ns"], "configmaps": ["cm"], "services": ["svc"], "serviceaccounts": ["sa"], "persistentvolumeclaims": ["pvc"],
               "deployments": ["deploy"], "statefulsets": ["sts"], "daemonsets": ["ds"], "ingresses": ["ing"],
               "customresourcedefinitions": ["crd", "crds"]}

# Lists whose elements are merged by a key (as the API's strategic merge keys say); every other
# list is atomic: owned and replaced whole.
LIST_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name", "volumeMounts": "mountPath", "ports": None}
PORT_KEYS = ("containerPort", "port")

LOCK = threading.Lock()
CHANGED = threading.Condition(LOCK)  # notified on every change, for watches
STORE = {}  # (group, plural, namespace, name) -> object
EVENTS = []  # (resourceVersion, type, key, object), the recent ones, for watches
SEEN = {}  # key -> (generation, when the controllers first saw it)
COUNTS = {}  # "VERB group/plural" -> requests, for benchmarks
FAULTS = []  # {"code", "match", "times", "retry_after"} injected by POST /fake/faults
LATENCY = [0.0]  # seconds added to every request
INFLIGHT = {}  # verb -> requests being served now
MOST = {}  # verb -> the most requests served at once, for tests of client-side concurrency
MANAGED = {}  # same key -> {(manager, operation): set(paths)}
RV = [0]


def record(etype, key, obj):
    """Keep an event for watches (the last 20,000) and wake them."""
    EVENTS.append((int(obj["metadata"]["resourceVersion"] or 0), etype, key, copy.deepcopy(obj)))
    del EVENTS[:-20000]
    CHANGED.notify_all()


def put(key, obj, created):
    STORE[key] = obj
    record("ADDED" if created else "MODIFIED", key, obj)


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_rv():
    RV[0] += 1
    return str(RV[0])


def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return code, s


# --- OpenAPI v3: enough for clients to see that the server validates fields itself ------------

# The top-level fields each kind has; with fieldValidation=Strict any other is refused.
TOP_FIELDS = {"ConfigMap": {"data", "binaryData", "immutable"}, "Secret": {"data", "stringData", "type", "immutable"}, "ServiceAccount": {"secrets", "imagePullSecrets", "automountServiceAccountToken"}}


def gv_path(r):
    """A resource's group version as a path: `api/v1`, `apis/apps/v1`."""
    return f"api/{r[1]}" if not r[0] else f"apis/{r[0]}/{r[1]}"


def openapi_v3(rest):
    """The OpenAPI v3 index and, per group version, a document whose write operations take the
    `fieldValidation` parameter (how clients such as kubectl find that the server validates
    fields: they then send fieldValidation=Strict). No schemas: only top-level fields are
    checked (`strict_check`)."""
    gvs = sorted({gv_path(r) for r in all_resources()})
    if not rest:
        return 200, {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=fake"} for gv in gvs}}
    gv = "/".join(rest)
    if gv not in gvs:
        return not_found_path()
    param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
    paths = {}
    for r in all_resources():
        if gv_path(r) != gv:
            continue
        base = f"/{gv}/namespaces/{{namespace}}/{r[3]}" if r[4] else f"/{gv}/{r[3]}"
        gvk = [{"group": r[0], "version": r[1], "kind": r[2]}]
        write = lambda: {"parameters": [param], "x-kubernetes-group-version-kind": gvk[0]}
        paths[base] = {"post": write(), "get": {"x-kubernetes-group-version-kind": gvk[0]}}
        paths[base + "/{name}"] = {"put": write(), "patch": write(), "get": {"x-kubernetes-group-version-kind": gvk[0]}, "delete": {}}
    return 200, {"openapi": "3.0.0", "info": {"title": "fake-kube-apiserver", "version": "v1.32.0-fake"}, "paths": paths, "components": {"schemas": {}}}


def strict_check(kind, obj, q):
    """With fieldValidation=Strict, a top-level field the kind does not have is refused, as the
    API server refuses unknown fields (it checks every level against the schema; this, the top)."""
    if q.get("fieldValidation") != "Strict":
        return None
    known = {"apiVersion", "kind", "metadata", "status"} | TOP_FIELDS.get(kind, {"spec"})
    unknown = sorted(k for k in obj if k not in known)
    if unknown:
        return status(400, "BadRequest", "strict decoding error: " + ", ".join(f'unknown field "{k}"' for k in unknown))
    return None


def established(crd):
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in crd.get("status", {}).get("conditions", []))


def custom_resources():
    """The kinds of the CustomResourceDefinitions that are Established, as (group, version, kind,
    plural, namespaced): served once the API server has registered them, not before."""
    out = []
    for key, crd in STORE.items():
        if key[1] != "customresourcedefinitions" or not established(crd):
            continue
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        for v in spec.get("versions", []):
            if v.get("served", True):
                out.append((spec.get("group", ""), v["name"], names.get("kind", ""), names.get("plural", ""), spec.get("scope") == "Namespaced"))
    return out


def all_resources():
    return RESOURCES + custom_resources()


def short_names(r):
    if (r[0], r[3]) in {(x[0], x[3]) for x in RESOURCES}:
        return SHORT_NAMES.get(r[3], [])
    for key, crd in STORE.items():
        spec = crd.get("spec", {}) if key[1] == "customresourcedefinitions" else {}
        if spec.get("group") == r[0] and spec.get("names", {}).get("plural") == r[3]:
            return spec["names"].get("shortNames", [])
    return []


def resource_by_plural(group, version, plural):
    for r in all_resources():
        if r[0] == group and r[1] == version and r[3] == plural:
            return r
    return None


def not_found_path():
    return status(404, "NotFound", "the server could not find the requested resource")


def group_version(parts):
    """(group, version, the rest) of an API path (`/api/v1/...`, `/apis/GROUP/VERSION/...`), or None."""
    if parts[:1] == ["api"] and len(parts) >= 2:
        return "", parts[1], parts[2:]
    if parts[:1] == ["apis"] and len(parts) >= 3:
        return parts[1], parts[2], parts[3:]
    return None


def resource_path(group, version, rest):
    """(resource, namespace, name or None) that the path below a group version names, or None."""
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    res = resource_by_plural(group, version, rest[0])
    if res is None or (not res[4] and namespace is not None):
        return None
    return res, namespace, rest[1] if len(rest) > 1 else None


def api_version(group, version):
    return f"{group}/{version}" if group else version


# --- field sets (FieldsV1) -------------------------------------------------------------------


def list_key(name, items):
    """The merge key of a list of tables, or None when the list is atomic."""
    if name not in LIST_KEYS or not items or not all(isinstance(i, dict) for i in items):
        return None
    if name == "ports":
        for k in PORT_KEYS:
            if all(k in i for i in items):
                return k
        return None
    key = LIST_KEYS[name]
    return key if all(key in i for i in items) else None


def paths(value, prefix=()):
    """The leaf paths a value sets, as FieldsV1 segments."""
    out = set()
    for k, v in value.items():
        p = prefix + ("f:" + k,)
        key = list_key(k, v) if isinstance(v, list) else None
        if isinstance(v, dict) and v:
            out |= paths(v, p)
        elif key:
            for item in v:
                e = p + ("k:" + json.dumps({key: item[key]}, separators=(",", ":")),)
                out.add(e + (".",))
                out |= paths({kk: vv for kk, vv in item.items()}, e)
        else:
            out.add(p)
    return out


APPLIED_METADATA = ("labels", "annotations", "ownerReferences", "finalizers")


def applied_paths(obj):
    """What an applied configuration manages: everything but identity and status."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k in APPLIED_METADATA}
    if meta:
        body["metadata"] = meta
    return paths(body)


def to_fields_v1(ps):
    tree = {}
    for p in sorted(ps):
        node = tree
        for seg in p:
            node = node.setdefault(seg, {})
    return tree


def step(node, seg):
    """The child of `node` that a FieldsV1 segment names, or None."""
    if seg.startswith("f:"):
        return node.get(seg[2:]) if isinstance(node, dict) else None
    if seg.startswith("k:") and isinstance(node, list):
        want = json.loads(seg[2:])
        for item in node:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in want.items()):
                return item
    return None


def value_at(obj, p):
    node = obj
    for seg in p:
        if seg == ".":
            return node
        node = step(node, seg)
        if node is None:
            return None
    return node


def remove_at(obj, p):
    """Remove what path `p` names (a field, or a list element by its `.` marker)."""
    if p[-1] == ".":
        parent = value_at(obj, p[:-2])
        elem = value_at(obj, p[:-1])
        if isinstance(parent, list) and elem is not None:
            parent.remove(elem)
        return
    parent = value_at(obj, p[:-1])
    if isinstance(parent, dict):
        parent.pop(p[-1][2:], None)


def merge(dst, src):
    """Merge an applied configuration into an object: tables by key, keyed lists by element."""
    for k, v in src.items():
        key = list_key(k, v) if isinstance(v, list) else None
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        elif key and isinstance(dst.get(k), list):
            for item in v:
                have = next((i for i in dst[k] if isinstance(i, dict) and i.get(key) == item[key]), None)
                if have is None:
                    dst[k].append(copy.deepcopy(item))
                else:
                    merge(have, item)
        else:
            dst[k] = copy.deepcopy(v)


def prune_empty(obj, p):
    """After removing `p`, drop tables on its way that it left empty."""
    for n in range(len(p) - 1, 0, -1):
        parent, node = value_at(obj, p[: n - 1]) if n > 1 else obj, value_at(obj, p[:n])
        if isinstance(node, dict) and not node and isinstance(parent, dict) and p[n - 1].startswith("f:"):
            parent.pop(p[n - 1][2:], None)


def dotted(p):
    out = ""
    for seg in p:
        if seg == ".":
            continue
        out += "." + seg[2:] if seg.startswith("f:") else "[" + ",".join(f"{k}={v}" for k, v in json.loads(seg[2:]).items()) + "]"
    return out


def managed_fields(key, av):
    out = []
    for (manager, op), ps in sorted(MANAGED.get(key, {}).items()):
        if ps:
            out.append({"manager": manager, "operation": op, "apiVersion": av, "time": now(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(ps)})
    return out


def leaves_changed(old, new, prefix=()):
    """Paths of leaves that differ between two objects (for Update ownership)."""
    out = set()
    if isinstance(old, dict) and isinstance(new, dict):
        for k in set(old) | set(new):
            if not prefix and k in ("apiVersion", "kind", "status"):
                continue
            if prefix == ("f:metadata",) and k not in APPLIED_METADATA:
                continue
            out |= leaves_changed(old.get(k), new.get(k), prefix + ("f:" + k,))
        return out
    if old != new and new is not None:
        if isinstance(new, dict):
            return paths(new, prefix)
        out.add(prefix)
    return out


def spec_changed(old, new):
    strip = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}
    return strip(old) != strip(new)


# --- the API -----------------------------------------------------------------------------------


class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_KUBE_LOG"):
            sys.stderr.write("fake-kube: " + (fmt % args) + "\n")

    def send(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        if getattr(self, "_body", None) is None:
            self._body = self.read_body()
        return self._body

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        self._body = None
        self.body()
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self.send(*status(401, "Unauthorized", "Unauthorized"))
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        if parts[:1] == ["fake"]:
            return self.fake_admin(parts[1:])
        what = self.command + " " + url.path
        with LOCK:
            INFLIGHT[self.command] = INFLIGHT.get(self.command, 0) + 1
            MOST[self.command] = max(MOST.get(self.command, 0), INFLIGHT[self.command])
        try:
            return self.serve(parts, q, url, what)
        finally:
            with LOCK:
                INFLIGHT[self.command] -= 1

    def serve(self, parts, q, url, what):
        with LOCK:
            COUNTS[self.command + " " + url.path] = COUNTS.get(self.command + " " + url.path, 0) + 1
            fault = next((f for f in FAULTS if f["times"] > 0 and f.get("match", "") in what), None)
            if fault:
                fault["times"] -= 1
            delay = LATENCY[0]
        if delay:
            time.sleep(delay)
        if fault:
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}.get(fault["code"], "InternalError")
            code, body = status(fault["code"], reason, f"injected by the test ({reason})")
            if fault.get("retry_after") is not None:
                body["details"] = {"retryAfterSeconds": fault["retry_after"]}
            return self.send(code, body, {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else None)
        if self.command == "GET" and q.get("watch") in ("true", "1"):
            return self.watch(parts, q)
        try:
            with LOCK:
                code, body = self.route(parts, q)
        except ValueError as e:
            code, body = status(400, "BadRequest", str(e))
        self.send(code, body)

    def fake_admin(self, parts):
        """The test's own controls: POST /fake/faults, POST /fake/latency, GET /fake/calls."""
        try:
            body = json.loads(self.body() or b"{}")
            if parts == ["faults"] and self.command == "POST" and "code" not in body:
                raise ValueError("a fault needs a code")
        except ValueError as e:
            return self.send(*status(400, "BadRequest", str(e)))
        with LOCK:
            if parts == ["faults"] and self.command == "POST":
                FAULTS.append({"code": int(body["code"]), "match": body.get("match", ""), "times": int(body.get("times", 1)), "retry_after": body.get("retry_after")})
                return self.send(200, {"faults": FAULTS})
            if parts == ["latency"] and self.command == "POST":
                LATENCY[0] = float(body.get("seconds", 0))
                return self.send(200, {"seconds": LATENCY[0]})
            if parts == ["calls"]:
                return self.send(200, COUNTS)
            if parts == ["concurrency"]:
                return self.send(200, MOST)
        return self.send(*status(404, "NotFound", "no such control"))

    def watch(self, parts, q):
        """A watch: the events after `resourceVersion` (all objects as ADDED without one), one
        JSON object per chunk, until `timeoutSeconds`."""
        with LOCK:
            gv = group_version(parts)
            found = resource_path(*gv) if gv and gv[2] else None
            if found is None:
                return self.send(*not_found_path())
            res, namespace, _ = found
            since = int(q.get("resourceVersion") or 0)
            fields = field_selector(q)
            labels = [s for s in q.get("labelSelector", "").split(",") if s]

            def wanted(key, obj):
                meta = obj["metadata"]
                return (
                    key[0] == res[0]
                    and key[1] == res[3]
                    and (not namespace or key[2] == namespace)
                    and fields_match(obj, fields)
                    and all(match(meta.get("labels", {}), l) for l in labels)
                )

            pending = []
            if not q.get("resourceVersion") or since == 0:
                pending = [("ADDED", self.shown(res, k, o)) for k, o in sorted(STORE.items(), key=lambda kv: str(kv[0])) if wanted(k, o)]
                since = RV[0]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + float(q.get("timeoutSeconds") or 1800)
        try:
            while True:
                for etype, obj in pending:
                    data = (json.dumps({"type": etype, "object": obj}) + "\n").encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                with LOCK:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    new = [e for e in EVENTS if e[0] > since and wanted(e[2], e[3])]
                    if not new:
                        CHANGED.wait(min(left, 1.0))
                        new = [e for e in EVENTS if e[0] > since and wanted(e[2], e[3])]
                    if EVENTS:
                        since = max(since, EVENTS[-1][0])
                    pending = [(e[1], self.shown(res, e[2], e[3])) for e in new]
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    def route(self, parts, q):
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "platform": "linux/amd64"}
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts[:2] == ["openapi", "v3"]:
            return openapi_v3(parts[2:])
        if parts == ["apis"]:
            versions = {}
            for r in all_resources():
                if r[0] and r[1] not in versions.setdefault(r[0], []):
                    versions[r[0]].append(r[1])
            return 200, {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in sorted(versions.items())
                ],
            }
        gv = group_version(parts)
        if gv is None:
            return not_found_path()
        group, version, rest = gv
        if not rest:
            if not any(r[0] == group and r[1] == version for r in all_resources()):
                return not_found_path()
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": api_version(group, version),
                "resources": [
                    {
                        "name": r[3],
                        "singularName": r[2].lower(),
                        "namespaced": r[4],
                        "kind": r[2],
                        "verbs": ["create", "delete", "get", "list", "patch", "update"],
                        "shortNames": short_names(r),
                    }
                    for r in all_resources()
                    if r[0] == group and r[1] == version
                ],
            }
        found = resource_path(group, version, rest)
        if found is None:
            return not_found_path()
        res, namespace, name = found
        if self.command == "GET" and name is None:
            return self.list(res, namespace, q)
        if self.command == "GET":
            return self.get(res, namespace, name)
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if self.command in ("POST", "PUT") and ctype not in ("application/json", "*/*", ""):
            return status(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml')
        if self.command == "POST" and name is None:
            return self.write(res, namespace, None, json.loads(self.body() or b"{}"), q, create=True)
        if self.command == "PUT" and name:
            return self.write(res, namespace, name, json.loads(self.body() or b"{}"), q, create=False)
        if self.command == "PATCH" and name:
            return self.patch(res, namespace, name, q)
        if self.command == "DELETE" and name:
            return self.delete(res, namespace, name)
        return status(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")

    def key(self, res, namespace, name):
        return (res[0], res[3], namespace if res[4] else None, name)

    def not_found(self, res, name):
        return status(404, "NotFound", f'{res[3]}{"." + res[0] if res[0] else ""} "{name}" not found', {"name": name, "group": res[0], "kind": res[3]})

    def shown(self, res, key, obj):
        out = copy.deepcopy(obj)
        out["metadata"]["managedFields"] = managed_fields(key, api_version(res[0], res[1]))
        return out

    def get(self, res, namespace, name):
        key = self.key(res, namespace, name)
        obj = STORE.get(key)
        if obj is None:
            return self.not_found(res, name)
        return 200, self.shown(res, key, obj)

    def list(self, res, namespace, q):
        selector = [s for s in q.get("labelSelector", "").split(",") if s]
        fields = field_selector(q)
        items = []
        for key, obj in sorted(STORE.items(), key=lambda kv: (kv[0][2] or "", kv[0][3])):
            if key[0] != res[0] or key[1] != res[3] or (namespace and key[2] != namespace):
                continue
            labels = obj["metadata"].get("labels", {})
            if all(match(labels, s) for s in selector) and fields_match(obj, fields):
                items.append(self.shown(res, key, obj))
        start = int(q.get("continue") or 0)
        limit = int(q.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        meta = {"resourceVersion": str(RV[0])}
        if limit and start + limit < len(items):
            meta["continue"] = str(start + limit)
            meta["remainingItemCount"] = len(items) - start - limit
        return 200, {"kind": res[2] + "List", "apiVersion": api_version(res[0], res[1]), "metadata": meta, "items": page}

    def manager(self, q, default_from_agent=True):
        if q.get("fieldManager"):
            return q["fieldManager"]
        agent = self.headers.get("User-Agent", "unknown")
        return agent.split("/")[0] if default_from_agent else agent

    def namespace_missing(self, res, namespace):
        """The refusal of a namespaced object in a namespace that does not exist, or None."""
        if res[4] and ("", "namespaces", None, namespace) not in STORE:
            return status(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})
        return None

    def write(self, res, namespace, name, obj, q, create):
        if not isinstance(obj, dict):
            raise ValueError("the body is not an object")
        refused = strict_check(res[2], obj, q)
        if refused:
            return refused
        meta = obj.setdefault("metadata", {})
        name = name or meta.get("name")
        if not name:
            return status(422, "Invalid", f"{res[2]} is invalid: metadata.name: Required value")
        missing = self.namespace_missing(res, namespace)
        if missing:
            return missing
        key = self.key(res, namespace, name)
        old = STORE.get(key)
        if create and old is not None:
            return status(409, "AlreadyExists", f'{res[3]} "{name}" already exists', {"name": name, "group": res[0], "kind": res[3]})
        if not create and old is None:
            return self.not_found(res, name)
        obj["apiVersion"], obj["kind"] = api_version(res[0], res[1]), res[2]
        meta.pop("managedFields", None)
        # Writes of the main resource leave its status alone (that is the status subresource's).
        obj.pop("status", None)
        if old is not None and "status" in old:
            obj["status"] = copy.deepcopy(old["status"])
        refused = admit(res, name, old, obj)
        if refused:
            return refused
        self.stamp(res, namespace, name, old, obj, q.get("dryRun") == "All")
        changed = leaves_changed(old or {}, obj)
        if q.get("dryRun") != "All":
            self.take_over(key, self.manager(q), "Update", changed)
            if old is not None and "deletionTimestamp" in old["metadata"]:
                obj["metadata"]["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
            if old is None or obj["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                put(key, obj, old is None)
            if "deletionTimestamp" in obj["metadata"] and not obj["metadata"].get("finalizers"):
                remove(key)
        return (201 if create else 200), self.shown(res, key, obj)

    def stamp(self, res, namespace, name, old, obj, dry_run):
        """Identity and versions; a write that changes nothing keeps its resourceVersion."""
        meta = obj["metadata"]
        meta["name"] = name
        if res[4]:
            meta["namespace"] = namespace
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            meta["generation"] = 1
        else:
            for k in ("uid", "creationTimestamp"):
                meta[k] = old["metadata"][k]
            meta["generation"] = old["metadata"]["generation"] + (1 if spec_changed(old, obj) else 0)
        unchanged = old is not None and strip_versions(old) == strip_versions(obj)
        # A dry run changes nothing, its resourceVersion included.
        meta["resourceVersion"] = (old["metadata"]["resourceVersion"] if old else "") if dry_run or unchanged else next_rv()

    def take_over(self, key, manager, op, ps):
        owners = MANAGED.setdefault(key, {})
        for other, owned in owners.items():
            if other != (manager, op):
                owned -= ps
        owners.setdefault((manager, op), set()).update(ps)

    def patch(self, res, namespace, name, q):
        ctype = self.headers.get("Content-Type", "").split(";")[0]
        body = self.body()
        if ctype == "application/apply-patch+yaml":
            try:
                applied = json.loads(body)
            except json.JSONDecodeError:
                return status(415, "UnsupportedMediaType", "this test server reads apply patches written as JSON (which is YAML)")
            if not q.get("fieldManager"):
                return status(422, "Invalid", "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value: is required for apply patch")
            return self.apply(res, namespace, name, applied, q)
        if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: application/apply-patch+yaml, application/merge-patch+json")
        key = self.key(res, namespace, name)
        old = STORE.get(key)
        if old is None:
            return self.not_found(res, name)
        new = merge_patch(copy.deepcopy(old), json.loads(body))
        return self.write(res, namespace, name, new, q, create=False)

    def apply(self, res, namespace, name, applied, q):
        manager, force = q["fieldManager"], q.get("force") == "true"
        refused = strict_check(res[2], applied, q)
        if refused:
            return refused
        if applied.get("metadata", {}).get("name") not in (None, name):
            return status(400, "BadRequest", "the name of the object does not match the name on the URL")
        missing = self.namespace_missing(res, namespace)
        if missing:
            return missing
        key = self.key(res, namespace, name)
        old = STORE.get(key)
        owners = {k: set(v) for k, v in MANAGED.get(key, {}).items()}
        new_set = applied_paths(applied)
        conflicts = []
        if old is not None:
            for (other, op), owned in owners.items():
                if other == manager and op == "Apply":
                    continue
                for p in sorted(new_set & owned):
                    if p[-1] != "." and value_at(old, p) != value_at(applied, p):
                        conflicts.append((other, p))
        if conflicts and not force:
            av = api_version(res[0], res[1])
            causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": dotted(p)} for m, p in conflicts]
            lines = "\n".join(f'- conflict with "{m}" using {av}: {dotted(p)}' for m, p in conflicts)
            n = len(conflicts)
            return status(409, "Conflict", f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {lines}", {"name": name, "group": res[0], "kind": res[3], "causes": causes})
        obj = copy.deepcopy(old) if old is not None else {"metadata": {}}
        others = set()
        for (other, op), owned in owners.items():
            if not (other == manager and op == "Apply"):
                owned -= {p for _, p in conflicts} if force else set()
                others |= owned
        # Fields this manager applied before and no longer does, that nobody else owns, go.
        for p in sorted(owners.get((manager, "Apply"), set()) - new_set - others, key=len, reverse=True):
            remove_at(obj, p)
            prune_empty(obj, p)
        body = {k: v for k, v in applied.items() if k not in ("apiVersion", "kind", "metadata", "status")}
        merge(obj, body)
        for field in APPLIED_METADATA:
            if field in applied.get("metadata", {}):
                if field in ("labels", "annotations"):
                    obj["metadata"].setdefault(field, {})
                    merge(obj["metadata"][field], applied["metadata"][field])
                else:
                    obj["metadata"][field] = copy.deepcopy(applied["metadata"][field])
        obj["apiVersion"], obj["kind"] = api_version(res[0], res[1]), res[2]
        refused = admit(res, name, old, obj)
        if refused:
            return refused
        self.stamp(res, namespace, name, old, obj, q.get("dryRun") == "All")
        owners[(manager, "Apply")] = new_set
        if q.get("dryRun") != "All":
            MANAGED[key] = owners
            if old is None or obj["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                put(key, obj, old is None)
            return (201 if old is None else 200), self.shown(res, key, obj)
        out = copy.deepcopy(obj)
        out["metadata"]["managedFields"] = [
            {"manager": m, "operation": op, "apiVersion": api_version(res[0], res[1]), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(ps)} for (m, op), ps in sorted(owners.items()) if ps
        ]
        return (201 if old is None else 200), out

    def delete(self, res, namespace, name):
        """Delete, honouring finalizers (the object stays, marked, until they are removed) and
        the propagation policy towards the objects it owns (ownerReferences)."""
        try:
            options = json.loads(self.body() or b"{}")
        except json.JSONDecodeError:
            return status(400, "BadRequest", "the body is not DeleteOptions")
        key = self.key(res, namespace, name)
        obj = STORE.get(key)
        if obj is None:
            return self.not_found(res, name)
        policy = options.get("propagationPolicy", "Background")
        if obj["metadata"].get("finalizers"):
            if "deletionTimestamp" not in obj["metadata"]:
                obj = copy.deepcopy(obj)
                obj["metadata"]["deletionTimestamp"] = now()
                obj["metadata"]["resourceVersion"] = next_rv()
                put(key, obj, False)
            return 200, self.shown(res, key, obj)
        remove(key, policy)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "group": res[0], "kind": res[3], "uid": obj["metadata"]["uid"]}}


def remove(key, policy="Background"):
    """Remove an object now, and what it takes along: a namespace's objects, a CRD's custom
    resources, and the objects it owns (orphaned instead with the Orphan policy)."""
    obj = STORE.pop(key)
    MANAGED.pop(key, None)
    obj["metadata"]["resourceVersion"] = next_rv()
    record("DELETED", key, obj)
    uid = obj["metadata"]["uid"]
    if key[1] == "customresourcedefinitions":
        group, plural = obj.get("spec", {}).get("group"), obj.get("spec", {}).get("names", {}).get("plural")
        dependents = [k for k in STORE if k[0] == group and k[1] == plural]
    elif key[1] == "namespaces" and not key[0]:
        dependents = [k for k in STORE if k[2] == key[3]]
    else:
        dependents = [k for k, o in STORE.items() if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences", []))]
    for k in dependents:
        if k not in STORE:
            continue
        if policy == "Orphan" and key[1] not in ("customresourcedefinitions", "namespaces"):
            kept = copy.deepcopy(STORE[k])
            kept["metadata"]["ownerReferences"] = [r for r in kept["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if not kept["metadata"]["ownerReferences"]:
                del kept["metadata"]["ownerReferences"]
            kept["metadata"]["resourceVersion"] = next_rv()
            put(k, kept, False)
        else:
            remove(k, policy)


# --- what the API server does to what it is given: defaults and immutable fields ----------------

CLUSTER_IPS = [0]


def default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        for port in c.get("ports", []):
            port.setdefault("protocol", "TCP")


def apply_defaults(kind, old, obj):
    """The defaults the API server sets, as in its defaulting functions (a subset)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    template = spec.get("template", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job") and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
    elif kind == "StatefulSet":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    elif kind == "DaemonSet":
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    elif kind == "Job":
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
    elif kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if "clusterIP" not in spec:
            kept = (old or {}).get("spec", {}).get("clusterIP")
            if kept is None:
                CLUSTER_IPS[0] += 1
                kept = f"10.96.{CLUSTER_IPS[0] // 250}.{CLUSTER_IPS[0] % 250 + 1}"
            spec["clusterIP"] = kept
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        for port in spec.get("ports", []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif kind == "PersistentVolumeClaim":
        spec.setdefault("volumeMode", "Filesystem")


def invalid(res, name, field, value, detail):
    message = f'{res[2]}{"." + res[0] if res[0] else ""} "{name}" is invalid: {field}: Invalid value: {json.dumps(value)}: {detail}'
    cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {json.dumps(value)}: {detail}", "field": field}
    return status(422, "Invalid", message, {"name": name, "group": res[0], "kind": res[2], "causes": [cause]})


def immutable(res, name, old, obj):
    """A change the API server refuses: fields that cannot change once set."""
    if old is None:
        return None
    kind, o, n = res[2], old.get("spec", {}), obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet") and o.get("selector") != n.get("selector"):
        return invalid(res, name, "spec.selector", n.get("selector"), "field is immutable")
    if kind == "StatefulSet":
        allowed = ("replicas", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds", "ordinals", "revisionHistoryLimit")
        if {k: v for k, v in o.items() if k not in allowed} != {k: v for k, v in n.items() if k not in allowed}:
            return invalid(res, name, "spec", None, "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
    if kind == "Job" and o.get("template") != n.get("template"):
        return invalid(res, name, "spec.template", None, "field is immutable")
    if kind == "Service" and o.get("clusterIP") not in (None, "", n.get("clusterIP")):
        return invalid(res, name, "spec.clusterIPs[0]", n.get("clusterIP"), "may not change once set")
    if kind in ("ConfigMap", "Secret") and old.get("immutable"):
        if any(old.get(f) != obj.get(f) for f in ("data", "binaryData", "stringData", "immutable")):
            return invalid(res, name, "data", None, "field is immutable when `immutable` is set")
    return None


def validate(res, name, obj):
    """Some of the API server's validation of a workload: a selector that selects its own pod
    template, and containers in it."""
    if res[2] not in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return None
    spec = obj.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        return invalid(res, name, "spec.selector", spec.get("selector"), "empty selector is invalid for deployment")
    if any(labels.get(k) != v for k, v in selector.items()):
        return invalid(res, name, "spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
    if not (template.get("spec") or {}).get("containers"):
        message = f'{res[2]}.{res[0]} "{name}" is invalid: spec.template.spec.containers: Required value'
        cause = {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.template.spec.containers"}
        return status(422, "Invalid", message, {"name": name, "group": res[0], "kind": res[2], "causes": [cause]})
    return None


def admit(res, name, old, obj):
    """Defaults, then the checks of immutable fields and of the object: a refusal (Status), or
    None."""
    apply_defaults(res[2], old, obj)
    return immutable(res, name, old, obj) or validate(res, name, obj)


def strip_versions(obj):
    out = copy.deepcopy(obj)
    out.get("metadata", {}).pop("resourceVersion", None)
    out.get("metadata", {}).pop("generation", None)
    return out


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def field_selector(q):
    """`metadata.name=x,metadata.namespace=y` (the field selectors every kind supports)."""
    return dict(kv.split("=", 1) for kv in q.get("fieldSelector", "").replace("==", "=").split(",") if "=" in kv)


def fields_match(obj, fields):
    meta = obj["metadata"]
    return all(meta.get(f.split(".", 1)[1]) == v for f, v in fields.items() if f.startswith("metadata."))


def match(labels, requirement):
    m = re.fullmatch(r"\s*([^!=\s]+)\s*(==|=|!=)\s*([^\s]*)\s*", requirement)
    if m:
        k, op, v = m.groups()
        return (labels.get(k) == v) if op in ("=", "==") else (labels.get(k) != v)
    if requirement.startswith("!"):
        return requirement[1:].strip() not in labels
    return requirement.strip() in labels


# --- simulated controllers ---------------------------------------------------------------------

# How long a workload takes to become ready (FAKE_KUBE_READY_SECONDS, default 1). An image whose
# name contains "never-ready" never does: a Deployment of it fails with ProgressDeadlineExceeded
# once its progressDeadlineSeconds pass. A Job whose image contains "fails" fails.
READY_AFTER = float(os.environ.get("FAKE_KUBE_READY_SECONDS", "1"))


def condition(ctype, ok, reason, message=""):
    return {"type": ctype, "status": "True" if ok else "False", "reason": reason, "message": message, "lastTransitionTime": now(), "lastUpdateTime": now()}


def images(obj):
    return [c.get("image", "") for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])]


def workload_status(kind, obj, elapsed):
    """The status its controller would report `elapsed` seconds after this generation."""
    spec, meta = obj.get("spec", {}), obj["metadata"]
    g, name = meta["generation"], meta["name"]
    ready = elapsed >= READY_AFTER and not any("never-ready" in i for i in images(obj))
    replicas = spec.get("replicas", 1)
    if kind == "Deployment":
        if ready:
            return {
                "observedGeneration": g, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                "conditions": [condition("Available", True, "MinimumReplicasAvailable", "Deployment has minimum availability."),
                               condition("Progressing", True, "NewReplicaSetAvailable", f'ReplicaSet "{name}-{g}" has successfully progressed.')],
            }
        timed_out = elapsed >= spec.get("progressDeadlineSeconds", 600)
        progressing = condition("Progressing", False, "ProgressDeadlineExceeded", f'ReplicaSet "{name}-{g}" has timed out progressing.') if timed_out else condition(
            "Progressing", True, "ReplicaSetUpdated", f'ReplicaSet "{name}-{g}" is progressing.')
        return {
            "observedGeneration": g, "replicas": replicas, "updatedReplicas": replicas, "unavailableReplicas": replicas,
            "conditions": [condition("Available", replicas == 0, "MinimumReplicasUnavailable", "Deployment does not have minimum availability."), progressing],
        }
    if kind == "StatefulSet":
        revision = f"{name}-{g}"
        if ready:
            return {"observedGeneration": g, "replicas": replicas, "readyReplicas": replicas, "currentReplicas": replicas, "updatedReplicas": replicas,
                    "availableReplicas": replicas, "currentRevision": revision, "updateRevision": revision}
        return {"observedGeneration": g, "replicas": replicas, "currentReplicas": 0, "updatedReplicas": 0, "currentRevision": f"{name}-{g - 1}", "updateRevision": revision}
    if kind == "DaemonSet":
        n = 1 if ready else 0
        return {"observedGeneration": g, "desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": n,
                "updatedNumberScheduled": n, "numberAvailable": n, **({} if ready else {"numberUnavailable": 1})}
    if kind == "Job":
        if elapsed < READY_AFTER:
            return {"active": 1, "startTime": obj.get("status", {}).get("startTime", now())}
        if any("fails" in i for i in images(obj)):
            return {"failed": spec.get("backoffLimit", 6) + 1, "conditions": [condition("Failed", True, "BackoffLimitExceeded", "Job has reached the specified backoff limit")]}
        return {"succeeded": spec.get("completions", 1), "completionTime": now(), "conditions": [condition("Complete", True, "", "")]}
    if kind == "PersistentVolumeClaim":
        if elapsed < READY_AFTER:
            return {"phase": "Pending"}
        return {"phase": "Bound", "accessModes": spec.get("accessModes", []), "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")}}
    if kind == "CustomResourceDefinition":
        # Registered within moments; its kinds are served from then on.
        if elapsed < 0.3:
            return {"conditions": [condition("NamesAccepted", True, "NoConflicts", "no conflicts found")]}
        stored = [v["name"] for v in spec.get("versions", []) if v.get("storage")]
        return {
            "conditions": [condition("NamesAccepted", True, "NoConflicts", "no conflicts found"), condition("Established", True, "InitialNamesAccepted", "the initial names have been accepted")],
            "acceptedNames": spec.get("names", {}),
            "storedVersions": stored,
        }
    if kind == "custom":
        # A custom resource's controller: Ready after the delay, Stalled when its spec asks for
        # what never becomes ready.
        if elapsed < READY_AFTER:
            return {"observedGeneration": g, "conditions": [condition("Ready", False, "Progressing", "reconciling")]}
        if "never-ready" in json.dumps(spec):
            return {"observedGeneration": g, "conditions": [condition("Ready", False, "Stalled", "it cannot be reconciled"), condition("Stalled", True, "Stalled", "it cannot be reconciled")]}
        return {"observedGeneration": g, "conditions": [condition("Ready", True, "Reconciled", "reconciled")]}
    if kind == "Service" and spec.get("type") == "LoadBalancer":
        return {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]} if elapsed >= READY_AFTER else {}}
    return None


def same_status(a, b):
    """Equal but for times (set when a status is made)."""

    def clean(st):
        if st is None:
            return "null"
        out = {k: v for k, v in st.items() if not k.endswith("Time")}
        out["conditions"] = [{k: v for k, v in c.items() if not k.endswith("Time")} for c in st.get("conditions", [])]
        return json.dumps(out, sort_keys=True)

    return clean(a) == clean(b)


def controllers():
    """Every 100 ms: each workload's status, as its controller would have it by now."""
    static = {(r[0], r[3]): r[2] for r in RESOURCES}
    while True:
        time.sleep(0.1)
        with LOCK:
            for key, obj in list(STORE.items()):
                kind = static.get((key[0], key[1]), "custom")
                gen = obj["metadata"].get("generation", 1)
                if SEEN.get(key, (None,))[0] != gen:
                    SEEN[key] = (gen, time.monotonic())
                new = workload_status(kind, obj, time.monotonic() - SEEN[key][1])
                if new is None or same_status(obj.get("status"), new):
                    continue
                obj = copy.deepcopy(obj)
                obj["status"] = new
                obj["metadata"]["resourceVersion"] = next_rv()
                put(key, obj, False)


class Server(http.server.ThreadingHTTPServer):
    """Binds without asking DNS for its own name (HTTPServer's getfqdn): inside a network
    namespace without a resolver that lookup takes seconds."""

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def certificates(work, host, ca_dir):
    """A server certificate for 127.0.0.1 (and `host`) signed by the CA in `ca_dir`, else by a CA
    of its own (openssl CLI)."""
    run = lambda *a: subprocess.run(a, cwd=work, check=True, capture_output=True)
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    if ca_dir:
        for f in ("ca.crt", "ca.key"):
            with open(os.path.join(ca_dir, f), "rb") as src, open(os.path.join(work, f), "wb") as dst:
                dst.write(src.read())
    else:
        run("openssl", "req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=fake-kube-apiserver-ca")
    run("openssl", "req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=fake-kube-apiserver")
    extra = f",IP:{host}" if host not in ("127.0.0.1", "localhost") else ""
    with open(os.path.join(work, "san.ext"), "w") as f:
        f.write(f"subjectAltName=IP:127.0.0.1,DNS:localhost{extra}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")


def main():
    global TOKEN
    work = os.path.abspath(sys.argv[1])
    opts = dict(zip(sys.argv[2::2], sys.argv[3::2]))
    if len(sys.argv) % 2 != 0 or any(k not in ("--listen", "--ca", "--token") for k in opts):
        sys.exit("usage: fake_kube_apiserver.py WORK_DIR [--listen ADDRESS:PORT] [--ca DIR] [--token TOKEN]")
    host, _, port = opts.get("--listen", "127.0.0.1:0").rpartition(":")
    TOKEN = opts.get("--token", TOKEN)
    os.makedirs(work, exist_ok=True)
    certificates(work, host, opts.get("--ca"))
    with LOCK:
        for ns in ("default", "kube-system"):
            obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now(), "generation": 1, "resourceVersion": next_rv()}}
            STORE[("", "namespaces", None, ns)] = obj
    threading.Thread(target=controllers, daemon=True).start()
    server = Server((host, int(port)), Api)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(work, "server.crt"), os.path.join(work, "server.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    ca = base64.b64encode(open(os.path.join(work, "ca.crt"), "rb").read()).decode()
    kubeconfig = f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: https://{host}:{port}
    certificate-authority-data: {ca}
users:
- name: fake-admin
  user:
    token: {TOKEN}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake-admin
    namespace: default
current-context: fake
"""
    path = os.path.join(work, "kubeconfig")
    with open(path + ".tmp", "w") as f:
        f.write(kubeconfig)
    os.chmod(path + ".tmp", 0o600)
    os.rename(path + ".tmp", path)
    print(f"ready {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
