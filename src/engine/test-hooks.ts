// Points where a test can hold the engine, to kill it there (kill -9 mid-rebuild, mid-repair).
// With MODELHUB_TEST_PAUSE_AT=<point> the process says `{"type":"paused","at":<point>,"pid":…}`
// on stderr when it reaches the point, then waits (ten minutes, long enough for any test to
// send its signal). Unset, a point costs one environment read.
export async function pausePoint(point: string): Promise<void> {
  if (process.env.MODELHUB_TEST_PAUSE_AT !== point) return;
  process.stderr.write(`${JSON.stringify({ type: 'paused', at: point, pid: process.pid })}\n`);
  await new Promise((resolve) => setTimeout(resolve, 600_000));
}
