// The image's HEALTHCHECK (the image has no curl): healthy while the ops listener's /health/ready answers
// 200, i.e. the backend answers. HSMB_OPS__PORT is the port override the service itself reads.
const url = `http://127.0.0.1:${process.env.HSMB_OPS__PORT ?? 9464}/health/ready`;
try {
  const response = await fetch(url, { signal: AbortSignal.timeout(4000) });
  if (response.status !== 200) console.error(`${url}: ${response.status} ${await response.text()}`);
  process.exit(response.status === 200 ? 0 : 1);
} catch (e) {
  console.error(`${url}: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
