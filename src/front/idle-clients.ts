/**
 * The clients of a front in the order they were last active, so the one
 * idle longest is always first. A front asks it which client may give its
 * slot to a newcomer (the one idle longest, if idle long enough) and which
 * have passed the idle timeout.
 *
 * "Idle" is the front's to define through `busy()`: a client with anything
 * still owed to it (output held for a commit, bytes not yet taken by a
 * socket) is never idle, however long ago it last sent a byte, so it is
 * skipped here whatever its place in the order. Activity moves a client to
 * the end of the order (a Map keeps insertion order: delete and set again),
 * so finding the longest idle costs the busy clients in front of it, not a
 * pass over every client.
 */

export interface IdleCandidate {
  /** Something of this client is still owed or on its way: it is not idle. */
  busy(): boolean;
}

export class IdleClients<T extends IdleCandidate> {
  /** Client -> when it was last active (monotonic ms); iteration order is activity order. */
  private readonly lastActive = new Map<T, number>();

  get size(): number {
    return this.lastActive.size;
  }

  add(client: T, now: number): void {
    this.lastActive.delete(client);
    this.lastActive.set(client, now);
  }

  /** The client did something: it goes to the end of the order. */
  touch(client: T, now: number): void {
    if (!this.lastActive.delete(client)) return;
    this.lastActive.set(client, now);
  }

  remove(client: T): void {
    this.lastActive.delete(client);
  }

  /** How long `client` has been idle (0 if unknown). */
  idleMs(client: T, now: number): number {
    const at = this.lastActive.get(client);
    return at === undefined ? 0 : Math.max(0, now - at);
  }

  /** The client idle longest, if it has been idle at least `minIdleMs` and is not busy. */
  longestIdle(now: number, minIdleMs: number): T | undefined {
    for (const [client, at] of this.lastActive) {
      // Everyone after this one was active more recently still.
      if (now - at < minIdleMs) return undefined;
      if (!client.busy()) return client;
    }
    return undefined;
  }

  /** Every client idle at least `ms` and not busy, longest idle first. */
  idleFor(now: number, ms: number): T[] {
    const out: T[] = [];
    for (const [client, at] of this.lastActive) {
      if (now - at < ms) break;
      if (!client.busy()) out.push(client);
    }
    return out;
  }
}
