/** Reading a real `tandem primary` process's log for the moment it serves protected. */
import { Ledger } from '../../src/demo/ledger.js';
import type { ServiceIp } from '../../src/demo/service-ip.js';
import { until } from './wait.js';

const SERVICE = /guest service on 127\.0\.0\.1:(\d+)/;

/** The port of the primary's front, once its log says it serves and protection is up; the log in the error otherwise. */
export async function protectedServicePort(log: () => string, what: string, timeoutMs = 20_000): Promise<number> {
  let port: number | undefined;
  try {
    await until(
      () => {
        const m = SERVICE.exec(log());
        if (m && /protection: protected/.test(log())) port = Number(m[1]);
        return port !== undefined;
      },
      `${what}: the primary to get protected`,
      timeoutMs,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${log()}`, { cause: err });
  }
  return port!;
}

/**
 * Once the primary serves protected: points the service address at its
 * front, starts it, and starts a client ledger (`clients` writers) through it.
 */
export async function ledgerOnProtected(serviceIp: ServiceIp, log: () => string, what: string, clients = 6): Promise<Ledger> {
  serviceIp.moveTo({ host: '127.0.0.1', port: await protectedServicePort(log, what) });
  const bound = await serviceIp.start();
  const ledger = new Ledger({ host: '127.0.0.1', port: bound.port }, clients);
  ledger.start();
  return ledger;
}
