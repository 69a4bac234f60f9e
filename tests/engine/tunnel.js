// Runs inside the agent, with the agent's own node, as an attacker would: a CONNECT tunnel
// through the bottle's proxy ($HTTPS_PROXY), then either raw bytes or TLS whose ClientHello
// is split into a 1-byte write, a pause and the rest. Prints one JSON object.
//
//   node tunnel.js HOST PORT raw PAYLOAD_BASE64
//   node tunnel.js HOST PORT split-tls HTTP_REQUEST_BASE64
const net = require("net");
const tls = require("tls");
const { Duplex } = require("stream");

const [host, port, mode, payloadB64] = process.argv.slice(2);
const payload = Buffer.from(payloadB64 || "", "base64");
const proxy = new URL(process.env.HTTPS_PROXY);
const out = { received: "" };
let finished = false;

function finish() {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify(out));
  process.exit(0);
}
setTimeout(() => { out.timeout = true; finish(); }, 15000);

const sock = net.connect(Number(proxy.port), proxy.hostname, () => {
  sock.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
});
sock.on("error", (e) => { out.socketError = String(e); });
sock.on("close", () => { out.closed = true; if (mode === "raw") finish(); });

let head = Buffer.alloc(0);
function onHead(data) {
  head = Buffer.concat([head, data]);
  const end = head.indexOf("\r\n\r\n");
  if (end < 0) return;
  sock.removeListener("data", onHead);
  out.connect = head.subarray(0, end).toString().split("\r\n")[0];
  if (!out.connect.includes(" 200")) return finish();
  if (mode === "raw") raw(); else splitTls();
}
sock.on("data", onHead);

function raw() {
  sock.on("data", (d) => { out.received += d.toString("base64"); });
  sock.write(payload);
  // keep sending after the refusal: none of it may reach the upstream either
  let n = 0;
  const again = setInterval(() => {
    if (n++ > 5 || sock.destroyed) return clearInterval(again);
    sock.write(payload, () => {});
  }, 200);
}

function splitTls() {
  let first = true;
  const wrapper = new Duplex({
    write(chunk, enc, done) {
      if (first) {
        first = false;
        sock.write(chunk.subarray(0, 1));
        setTimeout(() => { sock.write(chunk.subarray(1)); done(); }, 500);
      } else {
        sock.write(chunk, done);
      }
    },
    read() {},
    final(done) { sock.end(); done(); },
  });
  sock.on("data", (d) => wrapper.push(d));
  sock.on("end", () => wrapper.push(null));
  const t = tls.connect({ socket: wrapper, servername: host }, () => {
    out.issuer = t.getPeerCertificate().issuer;
    out.authorized = t.authorized;
    t.write(payload);
  });
  let body = Buffer.alloc(0);
  t.on("data", (d) => { body = Buffer.concat([body, d]); });
  t.on("end", () => { out.received = body.toString(); finish(); });
  t.on("close", () => { out.received = body.toString(); finish(); });
  t.on("error", (e) => { out.tlsError = String(e); finish(); });
}
