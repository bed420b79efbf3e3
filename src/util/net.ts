/** Small socket helpers shared by every listener. */
import type { Server } from 'node:net';

/** Starts `server` listening; rejects with the listen error (EADDRINUSE...) instead of emitting it. */
export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
