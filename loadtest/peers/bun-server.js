// The Bun peer of chat-loadtest --dialect bun (issue #16): a hand-rolled chat server on
// Bun.serve's WebSocket (uWS topics) with Bun's built-in Redis client for fan-out across
// processes. Run 2 of them on one Redis: `PORT=3001 REDIS_URL=redis://127.0.0.1:6391 bun bun-server.js`.
//
// WebSocket  /ws?user=U  (JSON text frames)
//   -> {"type":"join","room":R}          <- {"type":"joined","room":R}
//   -> {"type":"send","room":R,"text":T}
//   <- {"type":"message","room":R,"from":U,"text":T}   to every member, the sender too
// HTTP       POST /publish {"room":R,"from":F,"text":T}  -> 201 once Redis took it
//
// Every message goes through Redis (also to the process it came in on): one channel for
// all rooms, each payload "R\n<frame>", and each process hands the frame, serialized
// once, to uWS's topic R (a topic without local subscribers costs a lookup). No history,
// no sequence numbers, no acks, no auth: the minimal fair peer.
import { RedisClient } from "bun";

const port = Number(process.env.PORT ?? 3001);
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6391";
const CHANNEL = "peers:bun";
const pub = new RedisClient(redisUrl);
const sub = new RedisClient(redisUrl);
await Promise.all([pub.connect(), sub.connect()]);

const fanout = (room, from, text) =>
  pub.publish(CHANNEL, room + "\n" + JSON.stringify({ type: "message", room, from, text }));

const server = Bun.serve({
  port,
  hostname: "127.0.0.1",
  async fetch(req, server) {
    const { pathname, searchParams } = new URL(req.url);
    if (pathname === "/ws") {
      if (server.upgrade(req, { data: { user: searchParams.get("user") ?? "anon" } })) return;
      return new Response("expected a WebSocket upgrade", { status: 400 });
    }
    if (pathname === "/publish" && req.method === "POST") {
      const { room, from, text } = await req.json();
      if (typeof room !== "string" || typeof text !== "string") {
        return new Response("room and text expected", { status: 400 });
      }
      await fanout(room, from ?? "backend", text);
      return new Response('{"ok":true}', { status: 201, headers: { "content-type": "application/json" } });
    }
    return new Response("not found", { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    message(ws, data) {
      let m;
      try { m = JSON.parse(data); } catch { return; }
      if (m.type === "join" && typeof m.room === "string") {
        ws.subscribe(m.room);
        ws.send(JSON.stringify({ type: "joined", room: m.room }));
      } else if (m.type === "send" && typeof m.room === "string") {
        fanout(m.room, ws.data.user, m.text);
      }
    },
  },
});

await sub.subscribe(CHANNEL, (message) => {
  const nl = message.indexOf("\n");
  server.publish(message.slice(0, nl), message.slice(nl + 1));
});
console.log(`bun peer listening on 127.0.0.1:${server.port} (pid ${process.pid})`);
