// The backend publisher of the Socket.IO peer (issue #16): an HTTP endpoint that emits
// through @socket.io/redis-emitter, as a backend outside the Socket.IO servers does. It
// is server-side work: chat-loadtest measures its CPU with the servers' and Redis's.
// `PORT=3100 REDIS_URL=redis://127.0.0.1:6392 node socketio-publisher.js`
//
// POST /publish {"room":R,"from":F,"text":T} -> 201 once handed to the Redis client
// (the emitter does not wait for Redis: that is how it is built).
const { createServer } = require("node:http");
const { createClient } = require("redis");
const { Emitter } = require("@socket.io/redis-emitter");

const port = Number(process.env.PORT ?? 3100);
const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6392";

(async () => {
  const client = createClient({ url });
  client.on("error", (e) => console.error("redis:", e.message));
  await client.connect();
  const emitter = new Emitter(client);
  createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/publish") {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let m;
      try { m = JSON.parse(Buffer.concat(chunks)); } catch { m = null; }
      if (!m || typeof m.room !== "string" || typeof m.text !== "string") {
        res.writeHead(400).end("room and text expected");
        return;
      }
      emitter.to(m.room).emit("message", { room: m.room, from: m.from ?? "backend", text: m.text });
      res.writeHead(201, { "content-type": "application/json" }).end('{"ok":true}');
    });
  }).listen(port, "127.0.0.1", () =>
    console.log(`socket.io publisher listening on 127.0.0.1:${port} (pid ${process.pid})`));
})();
