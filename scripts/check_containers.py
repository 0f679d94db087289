"""The checks of scripts/check-containers.sh that talk to running containers.

`check_containers.py COMMAND ARGS...`; each command prints what it saw and exits 0
when the behaviour holds, 1 (with the reason) when it does not. Clients are real:
HTTP with urllib, WebSocket with `websockets`, from the host, through the ports the
compose file publishes on 127.0.0.1 (or the pods' own addresses for kube play).
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import websockets

PROJECT = "chat"
EDGE = f"127.0.0.1:{os.environ.get('CHAT_EDGE_PORT', '18080')}"
PROMETHEUS = f"127.0.0.1:{os.environ.get('CHAT_PROMETHEUS_PORT', '19090')}"
STATE = os.environ.get("CHECK_STATE", "/tmp/check-containers-state.json")


def fail(msg):
    print(msg)
    sys.exit(1)


def podman(*args, check=True):
    out = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        fail(f"podman {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def container(service):
    """The running container of a compose service."""
    names = podman("ps", "--filter", f"label=com.docker.compose.project={PROJECT}",
                   "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}")
    if not names:
        fail(f"no running container for {service}")
    return names.splitlines()[0]


def address(name):
    return podman("inspect", "--format",
                  "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name).split()[0]


def http(method, url, body=None, headers=None, timeout=5):
    req = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def until(what, probe, timeout=60.0):
    """Calls `probe` until it returns a true value (a state change, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except OSError as e:
            last = e
        time.sleep(0.25)
    fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


def ws_connections(ip):
    """chat_ws_connections of a replica, read from its internal port."""
    status, body = http("GET", f"http://{ip}:9090/metrics")
    for line in body.splitlines():
        if line.startswith("chat_ws_connections "):
            return int(float(line.split()[1]))
    fail(f"{ip}: no chat_ws_connections in /metrics ({status})")


def publish(base, room, text, token=None):
    if token:
        return http("POST", f"{base}/v1/rooms/{room}/messages", json.dumps({"text": text}).encode(),
                    {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return http("POST", f"{base}/chat/send",
                json.dumps({"sender": "publisher", "receiver": room, "text": text,
                            "event": "message"}).encode(),
                {"Content-Type": "application/json"})


class Member:
    """A WebSocket client in one room that reconnects and rejoins with `since`, as the
    web client does, and records every seq it is given."""

    def __init__(self, url, user, room, token=None):
        self.url, self.user, self.room, self.token = url, user, room, token
        self.seqs, self.last, self.sessions, self.recovered = [], None, 0, []
        self.connected = asyncio.Event()

    async def run(self, stop):
        while not stop.is_set():
            try:
                async with websockets.connect(self.url, open_timeout=5, max_size=None) as ws:
                    hello = {"type": "connect", "token": self.token} if self.token else \
                        {"type": "connect", "user": self.user}
                    await ws.send(json.dumps(hello))
                    join = {"type": "join", "room": self.room}
                    if self.last:
                        join["since"] = {"epoch": self.last[0], "seq": self.last[1]}
                    await ws.send(json.dumps(join))
                    self.sessions += 1
                    while not stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.5)
                        except asyncio.TimeoutError:
                            continue
                        frame = json.loads(raw)
                        kind = frame.get("type")
                        if kind == "joined":
                            if self.last:
                                self.recovered.append(frame.get("recovered", True))
                            self.connected.set()
                        elif kind == "message" and frame.get("room") == self.room:
                            self.seqs.append(frame["seq"])
                            self.last = (frame["epoch"], frame["seq"])
            except (websockets.exceptions.WebSocketException, OSError, asyncio.TimeoutError):
                self.connected.clear()
                await asyncio.sleep(0.2)

    def gaps(self, upto):
        want = list(range(1, upto + 1))
        return None if self.seqs == want else \
            f"{self.user}: {len(self.seqs)} seqs, missing {sorted(set(want) - set(self.seqs))[:10]}, " \
            f"duplicates {len(self.seqs) - len(set(self.seqs))}"


async def members_on_replicas(url, room, replicas, count, token_of=None):
    """`count` members through `url`; returns them once all joined, with how many each
    replica holds (read off the replicas' own metrics)."""
    stop = asyncio.Event()
    members = [Member(url, f"u{i}", room, token_of(f"u{i}") if token_of else None) for i in range(count)]
    tasks = []
    # One after the other, as users arrive: the edge spreads connections by rotating
    # the replicas' addresses on each lookup from its DNS cache, whereas a burst that
    # waits on one fresh lookup all goes to the first address.
    for m in members:
        tasks.append(asyncio.create_task(m.run(stop)))
        try:
            await asyncio.wait_for(m.connected.wait(), 30)
        except asyncio.TimeoutError:
            stop.set()
            fail(f"only {sum(m.connected.is_set() for m in members)} of {count} members joined through {url}")
    held = {name: ws_connections(ip) for name, ip in replicas.items()}
    return members, tasks, stop, held


async def delivered(members, upto, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(m.seqs and m.seqs[-1] >= upto for m in members):
            break
        await asyncio.sleep(0.1)
    return [g for m in members if (g := m.gaps(upto))]


# -- compose --------------------------------------------------------------------

def compose_web():
    status, body = http("GET", f"http://{EDGE}/")
    if status != 200 or "<html" not in body.lower() or "<script" not in body:
        fail(f"GET / through the edge: {status} {body[:120]!r}")
    status, body = http("GET", f"http://{EDGE}/rooms/general")
    if status != 200 or "<html" not in body.lower():
        fail(f"GET /rooms/general (SPA route): {status}")
    print("GET / and an SPA route serve the web client")


def compose_fanout():
    """/chat/send through the edge reaches members on both replicas."""
    replicas = {s: address(container(s)) for s in ("realtime-1", "realtime-2")}

    async def go():
        members, tasks, stop, held = await members_on_replicas(f"ws://{EDGE}/ws", "fanout", replicas, 12)
        if not all(held.values()):
            stop.set()
            fail(f"the edge put every member on one replica: {held}")
        for i in range(5):
            status, body = publish(f"http://{EDGE}", "fanout", f"m{i}")
            if status != 201:
                fail(f"/chat/send through the edge: {status} {body}")
        bad = await delivered(members, 5)
        stop.set()
        await asyncio.gather(*tasks)
        if bad:
            fail("\n".join(bad))
        print(f"5 messages to 12 members, on replicas {held}")
    asyncio.run(go())


def compose_failover():
    """Stopping realtime-1 (it drains) moves its members to realtime-2, where they
    recover with `since`: every member has every seq once, in order."""
    replicas = {s: address(container(s)) for s in ("realtime-1", "realtime-2")}
    # A stopped container has no address: compose_recreate needs to know the old one.
    with open(STATE, "w") as f:
        json.dump({"realtime-1": replicas["realtime-1"]}, f)

    async def go():
        members, tasks, stop, held = await members_on_replicas(f"ws://{EDGE}/ws", "failover", replicas, 12)
        if not held["realtime-1"]:
            fail(f"no member on realtime-1 to move: {held}")
        sent = 0

        async def publisher(until_done):
            nonlocal sent
            while not until_done.is_set():
                status, body = await asyncio.to_thread(publish, f"http://{EDGE}", "failover", f"m{sent}")
                if status != 201:
                    fail(f"publish {sent + 1}: {status} {body}")
                sent += 1
                await asyncio.sleep(0.05)
        done = asyncio.Event()
        pub = asyncio.create_task(publisher(done))
        await asyncio.sleep(1)
        started = time.monotonic()
        out = await asyncio.to_thread(subprocess.run, ["podman-compose", "stop", "realtime-1"],
                                      capture_output=True, text=True)
        stopped_in = time.monotonic() - started
        if out.returncode != 0:
            fail(f"podman-compose stop realtime-1: {out.stderr[-400:]}")
        exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", container_any("realtime-1"))
        await asyncio.sleep(1)
        done.set()
        await pub
        bad = await delivered(members, sent)
        stop.set()
        await asyncio.gather(*tasks)
        if bad:
            fail("\n".join(bad))
        moved = sum(m.sessions > 1 for m in members)
        if moved < held["realtime-1"]:
            fail(f"{held['realtime-1']} members were on realtime-1 but {moved} reconnected")
        if not all(all(m.recovered) for m in members):
            fail("a rejoin with since was not recovered")
        if exit_code != "0":
            fail(f"realtime-1 exited {exit_code} (want 0 after draining)")
        print(f"{sent} messages, {moved} members moved from realtime-1 (stopped in {stopped_in:.1f} s, "
              f"exit 0), 0 lost, 0 duplicated")
    asyncio.run(go())


def container_any(service):
    names = podman("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
                   "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}")
    if not names:
        fail(f"no container for {service}")
    return names.splitlines()[0]


def compose_recreate():
    """realtime-1 recreated on a new address: the edge sends new members to it."""
    name = container_any("realtime-1")
    old = podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name).split()
    if not old and os.path.exists(STATE):
        with open(STATE) as f:
            old = [json.load(f)["realtime-1"]]
    if not old:
        fail("the old address of realtime-1 is not known")
    network = podman("inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                     container("realtime-2")).split()[0]
    # A placeholder takes the freed address, so the new container must get another one.
    podman("rm", "-f", "-t", "20", name)
    podman("run", "-d", "--rm", "--name", "chat-address-holder", "--network", network, "--ip", old[0],
           "chat-standin/debian:bookworm", "sleep", "300")
    try:
        out = subprocess.run(["podman-compose", "up", "-d", "--no-deps", "realtime-1"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"podman-compose up -d --no-deps realtime-1: {out.stderr[-400:]}")
        new = address(container("realtime-1"))
        if new == old[0]:
            fail(f"realtime-1 came back on its old address {new}")
        until("realtime-1 healthy", lambda: subprocess.run(
            ["podman", "healthcheck", "run", container("realtime-1")], capture_output=True).returncode == 0)
        replicas = {"realtime-1": new, "realtime-2": address(container("realtime-2"))}

        async def go():
            # The edge's resolver keeps an answer for `valid` (5 s): new members reach
            # the new address once the cached answer expires.
            started = time.monotonic()
            while True:
                members, tasks, stop, held = await members_on_replicas(f"ws://{EDGE}/ws", "recreated", replicas, 8)
                if held["realtime-1"] or time.monotonic() - started > 20:
                    break
                stop.set()
                await asyncio.gather(*tasks)
                await asyncio.sleep(1)
            status, body = publish(f"http://{EDGE}", "recreated", "after recreate")
            bad = await delivered(members, 1)
            stop.set()
            await asyncio.gather(*tasks)
            if status != 201 or bad:
                fail(f"publish {status} {body}; " + "; ".join(bad))
            if not held["realtime-1"]:
                fail(f"the edge sends nobody to the recreated realtime-1 at {new}: {held}")
            print(f"realtime-1 {old[0]} -> {new}; members per replica {held}, "
                  f"{time.monotonic() - started:.1f} s after it was healthy")
        asyncio.run(go())
    finally:
        podman("rm", "-f", "-t", "0", "chat-address-holder", check=False)


def compose_healthy(*services):
    """Each chat service's compose healthcheck (the binary's `healthcheck`) passes."""
    for service in services:
        name = container(service)
        until(f"{service} healthy", lambda: subprocess.run(
            ["podman", "healthcheck", "run", name], capture_output=True).returncode == 0, 60)
    print("healthy: " + ", ".join(services))


def prometheus_targets():
    def all_up():
        status, body = http("GET", f"http://{PROMETHEUS}/api/v1/targets")
        if status != 200:
            return False
        targets = json.loads(body)["data"]["activeTargets"]
        chat = [t for t in targets if t["labels"]["job"] in ("gateway", "realtime", "redis")]
        if len(chat) == 4 and all(t["health"] == "up" for t in chat):
            return sorted(t["labels"]["instance"] for t in chat)
        return False
    print("up: " + ", ".join(until("every chat target up in Prometheus", all_up, 90)))


def build_info(revision):
    """Prometheus sees chat_build_info with the built revision, and the process and
    Redis metrics, for every target."""
    def query(expr):
        status, body = http("GET", f"http://{PROMETHEUS}/api/v1/query?query=" + urllib.parse.quote(expr))
        return json.loads(body)["data"]["result"] if status == 200 else []
    until(f"chat_build_info{{revision={revision!r}}} on the 3 chat targets",
          lambda: len(query(f'chat_build_info{{revision="{revision}"}} == 1')) == 3, 60)
    for expr in ('process_resident_memory_bytes{job=~"gateway|realtime"} > 0', 'chat_memory_limit_bytes > 0'):
        until(f"{expr} on the 3 chat targets", lambda: len(query(expr)) == 3, 30)
    until("redis_memory_max_bytes > 0 (maxmemory) from redis_exporter",
          lambda: len(query('redis_memory_max_bytes{job="redis"} > 0')) == 1, 30)
    print(f"revision {revision}, process and Redis metrics in Prometheus")


def no_ansi(*services):
    for service in services:
        logs = subprocess.run(["podman", "logs", container(service)], capture_output=True, text=True)
        text = logs.stdout + logs.stderr
        if "\x1b[" in text:
            fail(f"{service}: colour escapes in its logs: {text[:200]!r}")
        if not text.strip():
            fail(f"{service}: no logs")
    print("plain log lines: " + ", ".join(services))


def compose_gone():
    left = podman("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "{{.Names}}")
    if left:
        fail(f"still there after down: {left}")
    print("no container of the project left")


# -- kube play --------------------------------------------------------------------

def jwt(secret, user):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": user, "exp": int(time.time()) + 3600}).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def kube_check(*manifests):
    """The played pods: readiness as the kubelet would probe it, non-root, read-only
    root fs; then a message published to the gateway pod reaches a member on a
    realtime pod."""
    import yaml
    docs = [d for m in manifests for d in yaml.safe_load_all(open(m)) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    secret = next((d for d in docs if d["kind"] == "Secret" and "jwt-secret" in (d.get("data") or {})), None)
    if secret is None:
        fail("no Secret with jwt-secret among the played objects")
    jwt_secret = base64.b64decode(secret["data"]["jwt-secret"]).decode()
    pods = {}
    for d in deployments:
        name = d["metadata"]["name"]
        pod, ip = pod_of(name)
        pods[name] = ip
        spec = d["spec"]["template"]["spec"]
        for c in json.loads(d["metadata"]["annotations"][ORIGINAL]):
            cname = f"{pod}-{c['name']}"
            probe = c.get("readinessProbe", {}).get("httpGet")
            if probe:
                port = probe["port"]
                if isinstance(port, str):
                    port = next(p["containerPort"] for p in c["ports"] if p["name"] == port)
                until(f"{cname} ready on {probe['path']}",
                      lambda: http("GET", f"http://{ip}:{port}{probe['path']}")[0] == 200, 60)
            elif c.get("readinessProbe", {}).get("exec"):
                cmd = c["readinessProbe"]["exec"]["command"]
                until(f"{cname} ready ({' '.join(cmd)})",
                      lambda: subprocess.run(["podman", "exec", cname, *cmd], capture_output=True).returncode == 0,
                      60)
            else:
                fail(f"{cname}: no readiness probe")
            # The main process's real uid, as the host's kernel sees it.
            pid = podman("inspect", "--format", "{{.State.Pid}}", cname)
            with open(f"/proc/{pid}/status") as f:
                user = next(line.split()[1] for line in f if line.startswith("Uid:"))
            ro = podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", cname)
            want_user = str(((spec.get("securityContext") or {}) | (c.get("securityContext") or {})).get("runAsUser"))
            if user != want_user or user == "0" or ro != "true":
                fail(f"{cname}: runs as uid {user} (want {want_user}), read-only root fs {ro}")
            print(f"{cname}: ready, uid {want_user}, read-only root fs")
    web = [ip for n, ip in pods.items() if n.endswith("-web")]
    for ip in web:
        status, body = http("GET", f"http://{ip}:8080/")
        if status != 200 or "<html" not in body.lower():
            fail(f"the web pod does not serve the web client at /: {status}")
        print("the web pod serves the web client at /")
    for name, ip in pods.items():
        if name.endswith("-redis"):
            # The bundled Redis refuses a client without the password.
            pod, _ = pod_of(name)
            said = subprocess.run(["podman", "exec", f"{pod}-redis", "env", "-u", "REDISCLI_AUTH", "redis-cli", "ping"],
                                  capture_output=True, text=True)
            if "NOAUTH" not in said.stdout + said.stderr:
                fail(f"the bundled Redis answered a client without the password: {said.stdout.strip()}")
            print("the bundled Redis refuses a client without the password (NOAUTH)")
        if name.endswith("-redis-exporter"):
            status, body = http("GET", f"http://{ip}:9121/metrics")
            if status != 200 or "\nredis_up 1" not in body:
                fail(f"redis_exporter does not reach Redis with the password: {status}")
            print("redis_exporter reaches the bundled Redis with its password (redis_up 1)")
    gateway = next(ip for n, ip in pods.items() if n.endswith("-gateway"))
    realtime = next(ip for n, ip in pods.items() if n.endswith("-realtime"))

    async def go():
        members, tasks, stop, _ = await members_on_replicas(
            f"ws://{realtime}:8081/ws", "kube", {}, 2, token_of=lambda u: jwt(jwt_secret, u))
        status, body = publish(f"http://{gateway}:8080", "kube", "through the pods", jwt(jwt_secret, "pub"))
        bad = await delivered(members, 1)
        stop.set()
        await asyncio.gather(*tasks)
        if status != 201 or bad:
            fail(f"publish to the gateway pod: {status} {body}; " + "; ".join(bad))
        print("a message published to the gateway pod reached both members on the realtime pod")
    asyncio.run(go())


ORIGINAL = "rehearsal.chat/containers"


def pod_of(deployment):
    """The pod kube play made for a Deployment, and its address."""
    pods = podman("pod", "ps", "--filter", f"name=^{deployment}-pod", "--format", "{{.Name}}").splitlines()
    if not pods:
        fail(f"no pod for Deployment {deployment}")
    infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pods[0])
    ip = podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", infra).split()
    if not ip:
        fail(f"pod {pods[0]} has no address")
    return pods[0], ip[0]


def kube_prepare(rendered_dir, outdir, images_json, secret_name=""):
    """The rendered chart as kube play takes it: what it runs (Deployments, ConfigMaps,
    Secrets; a StatefulSet as the Deployment of the same pod template), with the locally
    built images. Writes outdir/redis.yaml (the bundled Redis, played first) and
    outdir/chat.yaml; prints what is left out."""
    import yaml
    images = json.loads(images_json)
    docs = []
    for f in sorted(os.listdir(rendered_dir)):
        docs += [d for d in yaml.safe_load_all(open(os.path.join(rendered_dir, f))) if d]
    redis, chat, skipped = [], [], {}
    for d in docs:
        if d["kind"] == "StatefulSet":
            spec = d["spec"]
            d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": d["metadata"],
                 "spec": {"replicas": 1, "selector": spec["selector"], "template": spec["template"]}}
            redis.append(d)
        elif d["kind"] in ("Deployment", "ConfigMap", "Secret"):
            chat.append(d)
        else:
            skipped[d["kind"]] = skipped.get(d["kind"], 0) + 1
    if secret_name:
        chat.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name},
                     "type": "Opaque", "data": {
                         "jwt-secret": base64.b64encode(b"rehearsal-secret-0123456789abcdef").decode(),
                         "api-keys": base64.b64encode(b"rehearsal-api-key").decode(),
                         "redis-password": base64.b64encode(b"rehearsal-redis-password").decode()}})
    for d in redis + chat:
        if d["kind"] != "Deployment":
            continue
        # One pod each: kube play has no scheduler or Service to spread replicas behind.
        d["spec"]["replicas"] = 1
        containers = d["spec"]["template"]["spec"]["containers"]
        # kube play would publish every containerPort on the host (the pods would fight
        # over 9090, and the host's own Redis holds 6379), and it turns probes into
        # health checks that run curl inside the container (distroless has none). The
        # pods are reached on their own addresses instead, and kube_check probes them
        # as the kubelet would, from the original spec kept in an annotation.
        d["metadata"].setdefault("annotations", {})[ORIGINAL] = json.dumps(containers)
        for c in containers:
            for key in ("ports", "livenessProbe", "readinessProbe", "startupProbe"):
                c.pop(key, None)
            repo = c["image"].rsplit(":", 1)[0]
            for suffix, local in images.items():
                if repo.endswith(suffix):
                    c["image"] = local
                    c["imagePullPolicy"] = "Never"
    # Secrets become podman secrets before the pods start, made here: podman 4.3's
    # secretKeyRef reads a podman secret holding the JSON of the Secret's `data` (key ->
    # base64), while its kube play stores a played Secret as YAML (and an `optional`
    # ref then quietly yields nothing). So refs lose `optional`, and a ref to a key the
    # Secret lacks is dropped, which is what `optional` means.
    secrets = [d for d in chat if d["kind"] == "Secret"]
    keys = {d["metadata"]["name"]: set((d.get("data") or {}) | (d.get("stringData") or {})) for d in secrets}
    os.makedirs(os.path.join(outdir, "secrets"), exist_ok=True)
    for d in secrets:
        with open(os.path.join(outdir, "secrets", d["metadata"]["name"] + ".json"), "w") as f:
            data = dict(d.get("data") or {})
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in (d.get("stringData") or {}).items()})
            json.dump(data, f)
    chat = [d for d in chat if d["kind"] != "Secret"]
    for d in chat:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            env = []
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    if ref["key"] not in keys.get(ref["name"], set()):
                        continue
                    ref.pop("optional", None)
                env.append(e)
            c["env"] = env
    for name, objs in (("secrets", secrets), ("redis", redis), ("chat", chat)):
        with open(os.path.join(outdir, f"{name}.yaml"), "w") as f:
            yaml.safe_dump_all(objs, f)
    print("not played (kube play has no such objects): " +
          ", ".join(f"{k} x{n}" for k, n in sorted(skipped.items())))


def kube_alias(manifest, deployment, *hostnames):
    """Kube play has no Services: each Service name becomes a host alias of the
    address of the pod it selects."""
    import yaml
    _, ip = pod_of(deployment)
    docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
    for d in docs:
        if d["kind"] == "Deployment":
            d["spec"]["template"]["spec"].setdefault("hostAliases", []).append(
                {"ip": ip, "hostnames": list(hostnames)})
    with open(manifest, "w") as f:
        yaml.safe_dump_all(docs, f)
    print(f"{', '.join(hostnames)} -> {ip}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    globals()[cmd.replace("-", "_")](*args)
