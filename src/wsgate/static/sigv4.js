// SigV4 signatures for `@connections` calls, computed as botocore computes them (the
// gateway checks them with botocore): for a gateway started with `--access-keys`.
// Needs Web Crypto, which browsers offer only in secure contexts: https, or 127.0.0.1 and
// localhost over plain http.

const encoder = new TextEncoder();

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function sha256(text) {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

async function hmac(key, text) {
  const raw = typeof key === "string" ? encoder.encode(key) : key;
  const imported = await crypto.subtle.importKey(
    "raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
  );
  return crypto.subtle.sign("HMAC", imported, encoder.encode(text));
}

// The path as sent (already percent-encoded), encoded once more: botocore's
// quote(path, safe="/~"), so "%3D" becomes "%253D" and "@" becomes "%40".
function canonicalPath(path) {
  return path.replace(/[^A-Za-z0-9_.~/-]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
}

// The query's key=value pairs as sent, sorted by key, then value.
function canonicalQuery(search) {
  if (!search) return "";
  const pairs = search.split("&").map((pair) => {
    const at = pair.indexOf("=");
    return at < 0 ? [pair, ""] : [pair.slice(0, at), pair.slice(at + 1)];
  });
  const order = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  pairs.sort((a, b) => order(a[0], b[0]) || order(a[1], b[1]));
  return pairs.map(([key, value]) => `${key}=${value}`).join("&");
}

export function canSign() {
  return Boolean(globalThis.crypto?.subtle);
}

// The headers that sign `method url body` with the key: X-Amz-Date and Authorization.
// The browser sends Host itself (location.host), which the signature covers.
export async function sign({ method, url, body = "", keyId, secret, region = "us-east-1" }) {
  const target = new URL(url, location.href);
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${region}/execute-api/aws4_request`;
  const signedHeaders = "host;x-amz-date";
  const canonical = [
    method.toUpperCase(),
    canonicalPath(target.pathname),
    canonicalQuery(target.search.slice(1)),
    `host:${target.host}`,
    `x-amz-date:${amzDate}`,
    "",
    signedHeaders,
    await sha256(body),
  ].join("\n");
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, await sha256(canonical)].join("\n");
  let key = await hmac(`AWS4${secret}`, day);
  for (const part of [region, "execute-api", "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, toSign));
  return {
    "X-Amz-Date": amzDate,
    Authorization:
      `AWS4-HMAC-SHA256 Credential=${keyId}/${scope}, ` +
      `SignedHeaders=${signedHeaders}, Signature=${signature}`,
  };
}
