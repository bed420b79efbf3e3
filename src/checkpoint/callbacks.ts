/**
 * The save callbacks for a domain and its checkpoint devices, composed as
 * libxl composes Remus's: suspend = pause the guest, then devices'
 * postsuspend; postcopy = devices' preresume, then unpause (always);
 * checkpoint = devices' commit of the acked epoch.
 */
import type { Domain, PrecopyDecision, PrecopyStats, SaveCallbacks } from '../domain/types.js';
import type { DeviceSet } from './devices.js';

export function createSaveCallbacks(domain: Domain, devices: DeviceSet, precopyPolicy: (s: PrecopyStats) => PrecopyDecision): SaveCallbacks {
  return {
    async suspend(epoch) {
      domain.pause();
      await devices.run('postsuspend', epoch);
    },
    precopyPolicy,
    async postcopy(epoch) {
      try {
        await devices.run('preresume', epoch);
      } finally {
        domain.unpause();
      }
    },
    async checkpoint(epoch) {
      await devices.run('commit', epoch);
      return true;
    },
  };
}
