/**
 * The system suite's two lanes. The second lane starts at once with the `@beside` work (the
 * twin stories: they boot their own images); the first waits for the setup (the harness's
 * guest built, the project staged), then takes jobs from one shared queue, longest first; the
 * second joins the queue when its own work is done. Any list scheduling ends at most one job
 * after the average, and longest first makes that last job a short one, so the lanes end
 * together instead of one idling while the other works through a long tail.
 * `serial`: one lane (one qemu at a time): the queue, then the `@beside` work.
 */
export interface LaneJob {
  readonly name: string;
  /** What orders the queue, longest first (the scenario's timeout). Ties keep their order. */
  readonly weight: number;
  readonly run: () => Promise<void>;
}

export async function runLanes(o: {
  readonly setup: Promise<void>;
  readonly queue: readonly LaneJob[];
  readonly beside: readonly LaneJob[];
  readonly serial: boolean;
}): Promise<void> {
  const queue = [...o.queue].sort((a, b) => b.weight - a.weight); // stable
  const takeFromQueue = async (): Promise<void> => {
    await o.setup;
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) await next.run();
  };
  const beside = async (): Promise<void> => {
    for (const j of o.beside) await j.run();
  };
  if (o.serial) {
    await takeFromQueue();
    await beside();
    return;
  }
  await Promise.all([
    takeFromQueue(),
    (async (): Promise<void> => {
      await beside();
      await takeFromQueue();
    })(),
  ]);
}
