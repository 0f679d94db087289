// The Socket.IO peer of chat-loadtest --dialect socketio (issue #16): Socket.IO 4.8 on
// the WebSocket transport only, @socket.io/redis-adapter for fan-out across processes.
// Run 2 of them on one Redis: `PORT=3101 REDIS_URL=redis://127.0.0.1:6392 node socketio-server.js`.
//
// ws://host:port/socket.io/?EIO=4&transport=websocket, auth {"user":U} in the CONNECT packet
//   emit("join", R)                    <- emit("joined", R)
//   emit("send", {room:R, text:T})
//   <- emit("message", {room:R, from:U, text:T})   to every member, the sender too
// Backends publish through socketio-publisher.js (@socket.io/redis-emitter).
// No history, no sequence numbers, no acks: the minimal fair peer.
const { createServer } = require("node:http");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-adapter");

const port = Number(process.env.PORT ?? 3101);
const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6392";

(async () => {
  const pub = createClient({ url });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (e) => console.error("redis:", e.message));
  await Promise.all([pub.connect(), sub.connect()]);
  const http = createServer();
  const io = new Server(http, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(pub, sub),
  });
  io.on("connection", (socket) => {
    const user = String(socket.handshake.auth?.user ?? "anon");
    socket.on("join", (room) => {
      socket.join(room);
      socket.emit("joined", room);
    });
    socket.on("send", (m) => {
      if (m && typeof m.room === "string") io.to(m.room).emit("message", { room: m.room, from: user, text: m.text });
    });
  });
  http.listen(port, "127.0.0.1", () =>
    console.log(`socket.io peer listening on 127.0.0.1:${port} (pid ${process.pid})`));
})();
